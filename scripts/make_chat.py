#!/usr/bin/env python3
"""Regenerate the bundled chat set in baichuan/corpus/chat/: ``sft.jsonl`` (conversations) and
``dpo.jsonl`` (preference pairs).

Everything here was written for the baichuan project and is released under the project's license
(Apache-2.0). The conversations are built from small hand-written tables (poem texts, quotations,
Q&A pairs, phrase translations, reviews) and a few templates; arithmetic is computed. A seeded
``random.Random`` picks templates, so the output is byte-identical on every run::

    python scripts/make_chat.py            # rewrite baichuan/corpus/chat/sft.jsonl and dpo.jsonl
    python scripts/make_chat.py --check    # exit 1 if the files on disk differ

Only the standard library is used. Facts (poem lines, attributions, quotations, verses) were
checked by hand; when in doubt an item was left out.
"""
from __future__ import annotations

import argparse
import json
import random
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHAT_DIR = ROOT / "baichuan" / "corpus" / "chat"
SEED = 1998

CJK = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
WORD = re.compile(r"[A-Za-z]+")


def lang_of(texts) -> str:
    """'zh' when a conversation has more CJK characters than English words, else 'en'."""
    texts = list(texts)
    cjk = sum(len(CJK.findall(t)) for t in texts)
    words = sum(len(WORD.findall(t)) for t in texts)
    return "zh" if cjk > words else "en"


# =============================================================================================
# Fact tables
# =============================================================================================

DYN = {
    "李白": "唐代", "杜甫": "唐代", "王维": "唐代", "孟浩然": "唐代", "王之涣": "唐代", "李绅": "唐代",
    "柳宗元": "唐代", "白居易": "唐代", "孟郊": "唐代", "王勃": "唐代", "贺知章": "唐代", "骆宾王": "唐代",
    "张继": "唐代", "杜牧": "唐代", "王翰": "唐代", "王昌龄": "唐代", "陈子昂": "唐代", "李商隐": "唐代",
    "元稹": "唐代", "刘禹锡": "唐代", "岑参": "唐代", "张若虚": "唐代", "张九龄": "唐代", "贾岛": "唐代",
    "李峤": "唐代", "刘长卿": "唐代",
    "苏轼": "宋代", "杨万里": "宋代", "王安石": "宋代", "陆游": "宋代", "叶绍翁": "宋代", "文天祥": "宋代",
    "辛弃疾": "宋代", "李清照": "宋代",
    "李煜": "南唐", "杨慎": "明代", "马致远": "元代", "屈原": "战国时期", "曹操": "东汉末年", "曹植": "三国时期",
    "陶渊明": "东晋",
}

# Whole poems: (title, author, text). Lines are split on the punctuation.
POEMS = [
    ("静夜思", "李白", "床前明月光，疑是地上霜。举头望明月，低头思故乡。"),
    ("登鹳雀楼", "王之涣", "白日依山尽，黄河入海流。欲穷千里目，更上一层楼。"),
    ("春晓", "孟浩然", "春眠不觉晓，处处闻啼鸟。夜来风雨声，花落知多少。"),
    ("悯农（其二）", "李绅", "锄禾日当午，汗滴禾下土。谁知盘中餐，粒粒皆辛苦。"),
    ("悯农（其一）", "李绅", "春种一粒粟，秋收万颗子。四海无闲田，农夫犹饿死。"),
    ("相思", "王维", "红豆生南国，春来发几枝。愿君多采撷，此物最相思。"),
    ("江雪", "柳宗元", "千山鸟飞绝，万径人踪灭。孤舟蓑笠翁，独钓寒江雪。"),
    ("绝句（两个黄鹂鸣翠柳）", "杜甫", "两个黄鹂鸣翠柳，一行白鹭上青天。窗含西岭千秋雪，门泊东吴万里船。"),
    ("绝句（迟日江山丽）", "杜甫", "迟日江山丽，春风花草香。泥融飞燕子，沙暖睡鸳鸯。"),
    ("望庐山瀑布", "李白", "日照香炉生紫烟，遥看瀑布挂前川。飞流直下三千尺，疑是银河落九天。"),
    ("早发白帝城", "李白", "朝辞白帝彩云间，千里江陵一日还。两岸猿声啼不住，轻舟已过万重山。"),
    ("黄鹤楼送孟浩然之广陵", "李白", "故人西辞黄鹤楼，烟花三月下扬州。孤帆远影碧空尽，唯见长江天际流。"),
    ("赠汪伦", "李白", "李白乘舟将欲行，忽闻岸上踏歌声。桃花潭水深千尺，不及汪伦送我情。"),
    ("望天门山", "李白", "天门中断楚江开，碧水东流至此回。两岸青山相对出，孤帆一片日边来。"),
    ("夜宿山寺", "李白", "危楼高百尺，手可摘星辰。不敢高声语，恐惊天上人。"),
    ("独坐敬亭山", "李白", "众鸟高飞尽，孤云独去闲。相看两不厌，只有敬亭山。"),
    ("九月九日忆山东兄弟", "王维", "独在异乡为异客，每逢佳节倍思亲。遥知兄弟登高处，遍插茱萸少一人。"),
    ("送元二使安西", "王维", "渭城朝雨浥轻尘，客舍青青柳色新。劝君更尽一杯酒，西出阳关无故人。"),
    ("鹿柴", "王维", "空山不见人，但闻人语响。返景入深林，复照青苔上。"),
    ("竹里馆", "王维", "独坐幽篁里，弹琴复长啸。深林人不知，明月来相照。"),
    ("鸟鸣涧", "王维", "人闲桂花落，夜静春山空。月出惊山鸟，时鸣春涧中。"),
    ("杂诗", "王维", "君自故乡来，应知故乡事。来日绮窗前，寒梅著花未？"),
    ("回乡偶书", "贺知章", "少小离家老大回，乡音无改鬓毛衰。儿童相见不相识，笑问客从何处来。"),
    ("咏柳", "贺知章", "碧玉妆成一树高，万条垂下绿丝绦。不知细叶谁裁出，二月春风似剪刀。"),
    ("枫桥夜泊", "张继", "月落乌啼霜满天，江枫渔火对愁眠。姑苏城外寒山寺，夜半钟声到客船。"),
    ("清明", "杜牧", "清明时节雨纷纷，路上行人欲断魂。借问酒家何处有，牧童遥指杏花村。"),
    ("江南春", "杜牧", "千里莺啼绿映红，水村山郭酒旗风。南朝四百八十寺，多少楼台烟雨中。"),
    ("泊秦淮", "杜牧", "烟笼寒水月笼沙，夜泊秦淮近酒家。商女不知亡国恨，隔江犹唱后庭花。"),
    ("赤壁", "杜牧", "折戟沉沙铁未销，自将磨洗认前朝。东风不与周郎便，铜雀春深锁二乔。"),
    ("凉州词（葡萄美酒夜光杯）", "王翰", "葡萄美酒夜光杯，欲饮琵琶马上催。醉卧沙场君莫笑，古来征战几人回。"),
    ("凉州词（黄河远上白云间）", "王之涣", "黄河远上白云间，一片孤城万仞山。羌笛何须怨杨柳，春风不度玉门关。"),
    ("出塞", "王昌龄", "秦时明月汉时关，万里长征人未还。但使龙城飞将在，不教胡马度阴山。"),
    ("芙蓉楼送辛渐", "王昌龄", "寒雨连江夜入吴，平明送客楚山孤。洛阳亲友如相问，一片冰心在玉壶。"),
    ("从军行（其四）", "王昌龄", "青海长云暗雪山，孤城遥望玉门关。黄沙百战穿金甲，不破楼兰终不还。"),
    ("寻隐者不遇", "贾岛", "松下问童子，言师采药去。只在此山中，云深不知处。"),
    ("登乐游原", "李商隐", "向晚意不适，驱车登古原。夕阳无限好，只是近黄昏。"),
    ("夜雨寄北", "李商隐", "君问归期未有期，巴山夜雨涨秋池。何当共剪西窗烛，却话巴山夜雨时。"),
    ("八阵图", "杜甫", "功盖三分国，名成八阵图。江流石不转，遗恨失吞吴。"),
    ("江南逢李龟年", "杜甫", "岐王宅里寻常见，崔九堂前几度闻。正是江南好风景，落花时节又逢君。"),
    ("赠花卿", "杜甫", "锦城丝管日纷纷，半入江风半入云。此曲只应天上有，人间能得几回闻。"),
    ("乌衣巷", "刘禹锡", "朱雀桥边野草花，乌衣巷口夕阳斜。旧时王谢堂前燕，飞入寻常百姓家。"),
    ("宿建德江", "孟浩然", "移舟泊烟渚，日暮客愁新。野旷天低树，江清月近人。"),
    ("逢雪宿芙蓉山主人", "刘长卿", "日暮苍山远，天寒白屋贫。柴门闻犬吠，风雪夜归人。"),
    ("风", "李峤", "解落三秋叶，能开二月花。过江千尺浪，入竹万竿斜。"),
    ("池上", "白居易", "小娃撑小艇，偷采白莲回。不解藏踪迹，浮萍一道开。"),
    ("登幽州台歌", "陈子昂", "前不见古人，后不见来者。念天地之悠悠，独怆然而涕下。"),
    ("游子吟", "孟郊", "慈母手中线，游子身上衣。临行密密缝，意恐迟迟归。谁言寸草心，报得三春晖。"),
    ("春望", "杜甫", "国破山河在，城春草木深。感时花溅泪，恨别鸟惊心。烽火连三月，家书抵万金。白头搔更短，浑欲不胜簪。"),
    ("山居秋暝", "王维", "空山新雨后，天气晚来秋。明月松间照，清泉石上流。竹喧归浣女，莲动下渔舟。随意春芳歇，王孙自可留。"),
    ("春夜喜雨", "杜甫", "好雨知时节，当春乃发生。随风潜入夜，润物细无声。野径云俱黑，江船火独明。晓看红湿处，花重锦官城。"),
    ("望岳", "杜甫", "岱宗夫如何？齐鲁青未了。造化钟神秀，阴阳割昏晓。荡胸生曾云，决眦入归鸟。会当凌绝顶，一览众山小。"),
    ("送杜少府之任蜀州", "王勃", "城阙辅三秦，风烟望五津。与君离别意，同是宦游人。海内存知己，天涯若比邻。无为在歧路，儿女共沾巾。"),
    ("望月怀远", "张九龄", "海上生明月，天涯共此时。情人怨遥夜，竟夕起相思。灭烛怜光满，披衣觉露滋。不堪盈手赠，还寝梦佳期。"),
    ("使至塞上", "王维", "单车欲问边，属国过居延。征蓬出汉塞，归雁入胡天。大漠孤烟直，长河落日圆。萧关逢候骑，都护在燕然。"),
    ("过故人庄", "孟浩然", "故人具鸡黍，邀我至田家。绿树村边合，青山郭外斜。开轩面场圃，把酒话桑麻。待到重阳日，还来就菊花。"),
    ("登高", "杜甫", "风急天高猿啸哀，渚清沙白鸟飞回。无边落木萧萧下，不尽长江滚滚来。万里悲秋常作客，百年多病独登台。艰难苦恨繁霜鬓，潦倒新停浊酒杯。"),
    ("蜀相", "杜甫", "丞相祠堂何处寻，锦官城外柏森森。映阶碧草自春色，隔叶黄鹂空好音。三顾频烦天下计，两朝开济老臣心。出师未捷身先死，长使英雄泪满襟。"),
    ("题西林壁", "苏轼", "横看成岭侧成峰，远近高低各不同。不识庐山真面目，只缘身在此山中。"),
    ("饮湖上初晴后雨", "苏轼", "水光潋滟晴方好，山色空蒙雨亦奇。欲把西湖比西子，淡妆浓抹总相宜。"),
    ("惠崇春江晚景", "苏轼", "竹外桃花三两枝，春江水暖鸭先知。蒌蒿满地芦芽短，正是河豚欲上时。"),
    ("小池", "杨万里", "泉眼无声惜细流，树阴照水爱晴柔。小荷才露尖尖角，早有蜻蜓立上头。"),
    ("晓出净慈寺送林子方", "杨万里", "毕竟西湖六月中，风光不与四时同。接天莲叶无穷碧，映日荷花别样红。"),
    ("泊船瓜洲", "王安石", "京口瓜洲一水间，钟山只隔数重山。春风又绿江南岸，明月何时照我还。"),
    ("元日", "王安石", "爆竹声中一岁除，春风送暖入屠苏。千门万户曈曈日，总把新桃换旧符。"),
    ("游园不值", "叶绍翁", "应怜屐齿印苍苔，小扣柴扉久不开。春色满园关不住，一枝红杏出墙来。"),
    ("示儿", "陆游", "死去元知万事空，但悲不见九州同。王师北定中原日，家祭无忘告乃翁。"),
]

# Famous lines from longer works: (line, next, author, title).
EXTRA_COUPLETS = [
    ("天生我材必有用", "千金散尽还复来", "李白", "将进酒"),
    ("君不见黄河之水天上来", "奔流到海不复回", "李白", "将进酒"),
    ("长风破浪会有时", "直挂云帆济沧海", "李白", "行路难"),
    ("举杯邀明月", "对影成三人", "李白", "月下独酌"),
    ("小时不识月", "呼作白玉盘", "李白", "古朗月行"),
    ("春蚕到死丝方尽", "蜡炬成灰泪始干", "李商隐", "无题（相见时难别亦难）"),
    ("相见时难别亦难", "东风无力百花残", "李商隐", "无题（相见时难别亦难）"),
    ("身无彩凤双飞翼", "心有灵犀一点通", "李商隐", "无题（昨夜星辰昨夜风）"),
    ("曾经沧海难为水", "除却巫山不是云", "元稹", "离思"),
    ("同是天涯沦落人", "相逢何必曾相识", "白居易", "琵琶行"),
    ("在天愿作比翼鸟", "在地愿为连理枝", "白居易", "长恨歌"),
    ("野火烧不尽", "春风吹又生", "白居易", "赋得古原草送别"),
    ("日出江花红胜火", "春来江水绿如蓝", "白居易", "忆江南"),
    ("沉舟侧畔千帆过", "病树前头万木春", "刘禹锡", "酬乐天扬州初逢席上见赠"),
    ("读书破万卷", "下笔如有神", "杜甫", "奉赠韦左丞丈二十二韵"),
    ("朱门酒肉臭", "路有冻死骨", "杜甫", "自京赴奉先县咏怀五百字"),
    ("忽如一夜春风来", "千树万树梨花开", "岑参", "白雪歌送武判官归京"),
    ("停车坐爱枫林晚", "霜叶红于二月花", "杜牧", "山行"),
    ("一骑红尘妃子笑", "无人知是荔枝来", "杜牧", "过华清宫"),
    ("春江潮水连海平", "海上明月共潮生", "张若虚", "春江花月夜"),
    ("落霞与孤鹜齐飞", "秋水共长天一色", "王勃", "滕王阁序"),
    ("明月几时有", "把酒问青天", "苏轼", "水调歌头·明月几时有"),
    ("但愿人长久", "千里共婵娟", "苏轼", "水调歌头·明月几时有"),
    ("大江东去", "浪淘尽，千古风流人物", "苏轼", "念奴娇·赤壁怀古"),
    ("问君能有几多愁", "恰似一江春水向东流", "李煜", "虞美人"),
    ("人生自古谁无死", "留取丹心照汗青", "文天祥", "过零丁洋"),
    ("山重水复疑无路", "柳暗花明又一村", "陆游", "游山西村"),
    ("纸上得来终觉浅", "绝知此事要躬行", "陆游", "冬夜读书示子聿"),
    ("滚滚长江东逝水", "浪花淘尽英雄", "杨慎", "临江仙"),
    ("众里寻他千百度", "蓦然回首，那人却在，灯火阑珊处", "辛弃疾", "青玉案·元夕"),
    ("寻寻觅觅", "冷冷清清，凄凄惨惨戚戚", "李清照", "声声慢"),
    ("枯藤老树昏鸦", "小桥流水人家", "马致远", "天净沙·秋思"),
    ("夕阳西下", "断肠人在天涯", "马致远", "天净沙·秋思"),
    ("路漫漫其修远兮", "吾将上下而求索", "屈原", "离骚"),
    ("对酒当歌", "人生几何", "曹操", "短歌行"),
    ("何以解忧", "唯有杜康", "曹操", "短歌行"),
    ("老骥伏枥", "志在千里", "曹操", "龟虽寿"),
    ("东临碣石", "以观沧海", "曹操", "观沧海"),
    ("本是同根生", "相煎何太急", "曹植", "七步诗"),
    ("采菊东篱下", "悠然见南山", "陶渊明", "饮酒（其五）"),
]

SHIJING = [
    ("关关雎鸠", "在河之洲", "周南·关雎"),
    ("窈窕淑女", "君子好逑", "周南·关雎"),
    ("蒹葭苍苍", "白露为霜", "秦风·蒹葭"),
]

# What a poem expresses (used in follow-up turns).
FEELING = {
    "静夜思": "表达了诗人客居他乡、望月思乡的感情。",
    "登鹳雀楼": "写登楼远望的壮阔景色，也表达了不断进取、高瞻远瞩的精神。",
    "春晓": "写春天早晨的鸟鸣和夜里的风雨，表达了对春天的喜爱和对落花的怜惜。",
    "悯农（其二）": "写农民在烈日下劳作的辛苦，提醒人们珍惜粮食。",
    "江雪": "描绘了一幅寒江独钓图，表现了诗人孤独而清高的心境。",
    "赠汪伦": "用深千尺的桃花潭水作比，写出了李白和汪伦之间深厚的友情。",
    "九月九日忆山东兄弟": "写重阳节独在他乡，思念家乡的兄弟和亲人。",
    "送元二使安西": "写送朋友远行，劝他再喝一杯酒，表达了依依惜别之情。",
    "回乡偶书": "写诗人年老回到家乡，连孩子都不认识他，流露出久客他乡的感慨。",
    "枫桥夜泊": "写夜泊枫桥时的所见所闻，表达了旅途中的孤寂和愁思。",
    "芙蓉楼送辛渐": "写送别朋友，并借“一片冰心在玉壶”表明自己心地纯洁。",
    "游子吟": "通过母亲为远行的孩子缝衣服，歌颂了伟大的母爱。",
    "春望": "写安史之乱中长安的残破景象，表达了忧国思家的感情。",
    "登乐游原": "赞美夕阳的美丽，同时感叹美好的时光短暂。",
    "泊船瓜洲": "写诗人停船瓜洲时对家乡的思念。",
    "示儿": "这是陆游临终前写给儿子的诗，表达了盼望国家统一的爱国之情。",
    "望庐山瀑布": "用夸张和想象描绘庐山瀑布的雄伟壮丽。",
    "早发白帝城": "写乘船顺江而下的轻快，表达了诗人遇赦后的喜悦心情。",
    "咏柳": "把春风比作剪刀，赞美了春天的柳树和春天的创造力。",
    "清明": "写清明时节细雨中行人的愁绪，以及借问酒家的情景。",
}

# Chinese poem lines with English renderings written for this set (free translations).
POEM_EN = {
    "举头望明月，低头思故乡。": "I raise my head to gaze at the bright moon, then lower it and think of home.",
    "床前明月光，疑是地上霜。": "Bright moonlight before my bed; I take it for frost upon the ground.",
    "白日依山尽，黄河入海流。": "The white sun sinks behind the mountains; the Yellow River flows into the sea.",
    "欲穷千里目，更上一层楼。": "To see a thousand miles further, climb one more storey.",
    "春眠不觉晓，处处闻啼鸟。": "Sleeping in spring, I miss the dawn; everywhere I hear the birds sing.",
    "海内存知己，天涯若比邻。": "With a true friend somewhere within the four seas, the ends of the earth feel like next door.",
    "谁知盘中餐，粒粒皆辛苦。": "Who knows that every grain of rice on our plates comes from hard toil?",
    "野火烧不尽，春风吹又生。": "Wildfire cannot burn it all away; when the spring wind blows, it grows again.",
    "独在异乡为异客，每逢佳节倍思亲。": "Alone in a strange land as a stranger, at every festival I miss my family twice as much.",
    "但愿人长久，千里共婵娟。": "I only wish we may live long and share this lovely moon, though a thousand miles apart.",
}

LUNYU = [  # (line, next) from the Analects
    ("学而时习之", "不亦说乎"),
    ("有朋自远方来", "不亦乐乎"),
    ("人不知而不愠", "不亦君子乎"),
    ("温故而知新", "可以为师矣"),
    ("学而不思则罔", "思而不学则殆"),
    ("三人行", "必有我师焉"),
    ("己所不欲", "勿施于人"),
    ("知之为知之", "不知为不知，是知也"),
    ("敏而好学", "不耻下问"),
    ("工欲善其事", "必先利其器"),
    ("岁寒", "然后知松柏之后凋也"),
    ("君子坦荡荡", "小人长戚戚"),
    ("人无远虑", "必有近忧"),
    ("逝者如斯夫", "不舍昼夜"),
    ("见贤思齐焉", "见不贤而内自省也"),
    ("三军可夺帅也", "匹夫不可夺志也"),
    ("知者乐水", "仁者乐山"),
    ("德不孤", "必有邻"),
    ("君子和而不同", "小人同而不和"),
    ("朝闻道", "夕死可矣"),
    ("三十而立", "四十而不惑"),
]

# Shakespeare: (cue, full quotation, work, speaker or None).
SHAKES = [
    ("To be, or not to be", "To be, or not to be: that is the question.", "Hamlet", "Hamlet"),
    ("All the world's a stage", "All the world's a stage, and all the men and women merely players.", "As You Like It", "Jaques"),
    ("Romeo, Romeo", "O Romeo, Romeo! wherefore art thou Romeo?", "Romeo and Juliet", "Juliet"),
    ("What's in a name?", "What's in a name? That which we call a rose by any other name would smell as sweet.", "Romeo and Juliet", "Juliet"),
    ("Now is the winter of our discontent", "Now is the winter of our discontent made glorious summer by this sun of York.", "Richard III", "Richard, Duke of Gloucester"),
    ("Friends, Romans, countrymen", "Friends, Romans, countrymen, lend me your ears.", "Julius Caesar", "Mark Antony"),
    ("Shall I compare thee to a summer's day?", "Shall I compare thee to a summer's day? Thou art more lovely and more temperate.", "Sonnet 18", None),
    ("The course of true love", "The course of true love never did run smooth.", "A Midsummer Night's Dream", "Lysander"),
    ("Lord, what fools", "Lord, what fools these mortals be!", "A Midsummer Night's Dream", "Puck"),
    ("Though she be but little", "Though she be but little, she is fierce.", "A Midsummer Night's Dream", "Helena"),
    ("If music be the food of love", "If music be the food of love, play on.", "Twelfth Night", "Duke Orsino"),
    ("Some are born great", "Some are born great, some achieve greatness, and some have greatness thrust upon 'em.", "Twelfth Night", "Malvolio, reading a letter"),
    ("Double, double toil and trouble", "Double, double toil and trouble; fire burn and cauldron bubble.", "Macbeth", "the three witches"),
    ("Fair is foul", "Fair is foul, and foul is fair.", "Macbeth", "the three witches"),
    ("Out, damned spot!", "Out, damned spot! out, I say!", "Macbeth", "Lady Macbeth"),
    ("Tomorrow, and tomorrow, and tomorrow", "Tomorrow, and tomorrow, and tomorrow, creeps in this petty pace from day to day.", "Macbeth", "Macbeth"),
    ("Is this a dagger", "Is this a dagger which I see before me?", "Macbeth", "Macbeth"),
    ("Something is rotten", "Something is rotten in the state of Denmark.", "Hamlet", "Marcellus"),
    ("Brevity is", "Brevity is the soul of wit.", "Hamlet", "Polonius"),
    ("Neither a borrower", "Neither a borrower nor a lender be.", "Hamlet", "Polonius"),
    ("This above all", "This above all: to thine own self be true.", "Hamlet", "Polonius"),
    ("Alas, poor Yorick!", "Alas, poor Yorick! I knew him, Horatio.", "Hamlet", "Hamlet"),
    ("The lady doth protest", "The lady doth protest too much, methinks.", "Hamlet", "Queen Gertrude"),
    ("Frailty", "Frailty, thy name is woman!", "Hamlet", "Hamlet"),
    ("Good night, sweet prince", "Good night, sweet prince, and flights of angels sing thee to thy rest!", "Hamlet", "Horatio"),
    ("All that glisters", "All that glisters is not gold.", "The Merchant of Venice", "the Prince of Morocco, reading a scroll"),
    ("The quality of mercy", "The quality of mercy is not strained.", "The Merchant of Venice", "Portia"),
    ("A horse! a horse!", "A horse! a horse! my kingdom for a horse!", "Richard III", "King Richard"),
    ("Once more unto the breach, dear friends", "Once more unto the breach, dear friends, once more.", "Henry V", "King Henry"),
    ("We few, we happy few", "We few, we happy few, we band of brothers.", "Henry V", "King Henry"),
    ("O brave new world", "O brave new world, that has such people in't!", "The Tempest", "Miranda"),
    ("We are such stuff", "We are such stuff as dreams are made on.", "The Tempest", "Prospero"),
    ("Cowards die many times before their deaths", "Cowards die many times before their deaths; the valiant never taste of death but once.", "Julius Caesar", "Julius Caesar"),
    ("Beware", "Beware the ides of March.", "Julius Caesar", "the Soothsayer"),
    ("Et tu, Brute?", "Et tu, Brute? Then fall, Caesar!", "Julius Caesar", "Julius Caesar"),
    ("The fault, dear Brutus, is not in our stars", "The fault, dear Brutus, is not in our stars, but in ourselves, that we are underlings.", "Julius Caesar", "Cassius"),
    ("Parting is such sweet sorrow", "Good night, good night! Parting is such sweet sorrow, that I shall say good night till it be morrow.", "Romeo and Juliet", "Juliet"),
    ("Love all", "Love all, trust a few, do wrong to none.", "All's Well That Ends Well", "the Countess"),
    ("Uneasy lies the head", "Uneasy lies the head that wears a crown.", "Henry IV, Part 2", "King Henry IV"),
    ("The better part of valour", "The better part of valour is discretion.", "Henry IV, Part 1", "Falstaff"),
    ("How sharper than a serpent's tooth it is", "How sharper than a serpent's tooth it is to have a thankless child!", "King Lear", "King Lear"),
    ("Nothing will come", "Nothing will come of nothing.", "King Lear", "King Lear"),
    ("O, beware, my lord, of jealousy", "O, beware, my lord, of jealousy; it is the green-eyed monster.", "Othello", "Iago"),
]

PLOTS = {
    "Hamlet": "Prince Hamlet of Denmark seeks revenge on his uncle Claudius, who murdered Hamlet's father, took the throne and married his mother.",
    "Romeo and Juliet": "Two young lovers from the feuding Montague and Capulet families of Verona marry in secret, and a chain of misfortunes ends in both their deaths.",
    "Macbeth": "After three witches prophesy that he will be king, Macbeth murders King Duncan, rules as a tyrant, and is finally killed by Macduff.",
    "King Lear": "An old king divides his kingdom between his flattering daughters Goneril and Regan, banishes honest Cordelia, and suffers terribly for it.",
    "Othello": "Othello, a Moorish general in Venice, is tricked by his ensign Iago into believing his wife Desdemona is unfaithful, and he kills her.",
    "The Tempest": "Prospero, the exiled Duke of Milan, lives on an island with his daughter Miranda and uses magic to bring his enemies to its shore.",
    "A Midsummer Night's Dream": "Young lovers, a troupe of amateur actors and quarrelling fairies get tangled up in a magical forest near Athens, and Puck's mischief makes it worse.",
    "The Merchant of Venice": "Antonio borrows money from Shylock, promising a pound of his flesh if he cannot repay; Portia, disguised as a lawyer, saves him in court.",
    "Julius Caesar": "Brutus and Cassius lead a conspiracy to kill Caesar, but Mark Antony turns the people against them and they are defeated.",
    "Twelfth Night": "Shipwrecked Viola disguises herself as a young man and serves Duke Orsino, which leads to a comic love triangle with Olivia.",
    "Richard III": "Richard, Duke of Gloucester, schemes and murders his way to the English throne, and is killed at the Battle of Bosworth.",
    "Henry V": "The young King Henry leads the English army into France and wins a famous victory at Agincourt.",
    "As You Like It": "Rosalind, banished from court, flees to the Forest of Arden disguised as a young man and finds love with Orlando.",
}

PLAY_ZH = {
    "Hamlet": "哈姆雷特", "Romeo and Juliet": "罗密欧与朱丽叶", "Macbeth": "麦克白", "King Lear": "李尔王",
    "Othello": "奥赛罗", "The Tempest": "暴风雨", "A Midsummer Night's Dream": "仲夏夜之梦",
    "The Merchant of Venice": "威尼斯商人", "Twelfth Night": "第十二夜", "As You Like It": "皆大欢喜",
    "All's Well That Ends Well": "终成眷属", "Julius Caesar": "尤利乌斯·恺撒", "Richard III": "理查三世",
    "Henry V": "亨利五世",
}

SHAKES_ZH = {  # translations written for this set
    "To be, or not to be: that is the question.": "生存还是毁灭，这是一个问题。",
    "All the world's a stage, and all the men and women merely players.": "整个世界是一个舞台，所有的男男女女都只是演员。",
    "The course of true love never did run smooth.": "真爱之路从来不是平坦的。",
    "Brevity is the soul of wit.": "简洁是智慧的灵魂。",
    "All that glisters is not gold.": "闪光的未必都是金子。",
    "Love all, trust a few, do wrong to none.": "爱所有人，信任少数人，不负任何人。",
    "Some are born great, some achieve greatness, and some have greatness thrust upon 'em.": "有人生而伟大，有人成就伟大，也有人被迫伟大。",
    "Uneasy lies the head that wears a crown.": "戴王冠的人睡不安稳。",
    "Neither a borrower nor a lender be.": "不要向人借钱，也不要借钱给人。",
    "This above all: to thine own self be true.": "最重要的是：对自己要真诚。",
}

# zh phrase -> English
TRANS = [
    ("你好", "Hello."), ("谢谢", "Thank you."), ("早上好", "Good morning."), ("晚安", "Good night."),
    ("对不起", "I'm sorry."), ("没关系", "That's all right."), ("再见", "Goodbye."), ("生日快乐", "Happy birthday!"),
    ("新年快乐", "Happy New Year!"), ("欢迎光临", "Welcome!"), ("我饿了", "I'm hungry."),
    ("今天天气很好", "The weather is nice today."), ("请问洗手间在哪里？", "Excuse me, where is the restroom?"),
    ("这个多少钱？", "How much is this?"), ("我听不懂", "I don't understand."), ("你叫什么名字？", "What's your name?"),
    ("祝你好运", "Good luck!"), ("一路平安", "Have a safe trip."), ("好久不见", "Long time no see."),
    ("不客气", "You're welcome."), ("很高兴认识你", "Nice to meet you."), ("我喜欢读书", "I like reading."),
    ("今天是星期一", "Today is Monday."), ("请慢一点说", "Please speak a little more slowly."), ("我迷路了", "I'm lost."),
    ("这本书很有意思", "This book is very interesting."), ("我是学生", "I'm a student."),
    ("你会说中文吗？", "Can you speak Chinese?"), ("明天见", "See you tomorrow."), ("我想喝水", "I'd like some water."),
    ("春天来了", "Spring has come."), ("熟能生巧", "Practice makes perfect."),
    ("有志者事竟成", "Where there's a will, there's a way."), ("知识就是力量", "Knowledge is power."),
    ("时间就是金钱", "Time is money."), ("朋友", "friend"), ("月亮", "moon"), ("苹果", "apple"), ("图书馆", "library"),
    ("火车站", "train station"), ("诗人", "poet"), ("长江", "the Yangtze River"), ("黄河", "the Yellow River"),
    ("故乡", "hometown"), ("小说", "novel"), ("天气预报", "weather forecast"), ("电影院", "cinema"), ("飞机", "plane"),
]

PINYIN = {  # for English speakers asking how to say something in Chinese
    "Hello": ("你好", "nǐ hǎo"), "Thank you": ("谢谢", "xièxie"), "Good morning": ("早上好", "zǎoshang hǎo"),
    "Good night": ("晚安", "wǎn'ān"), "Goodbye": ("再见", "zàijiàn"), "Sorry": ("对不起", "duìbuqǐ"),
    "friend": ("朋友", "péngyou"), "moon": ("月亮", "yuèliang"), "Happy birthday": ("生日快乐", "shēngrì kuàilè"),
    "Happy New Year": ("新年快乐", "xīnnián kuàilè"), "You're welcome": ("不客气", "bú kèqi"),
    "Long time no see": ("好久不见", "hǎojiǔ bú jiàn"), "water": ("水", "shuǐ"), "book": ("书", "shū"),
    "teacher": ("老师", "lǎoshī"), "China": ("中国", "Zhōngguó"), "tea": ("茶", "chá"), "mountain": ("山", "shān"),
    "I love you": ("我爱你", "wǒ ài nǐ"), "cat": ("猫", "māo"),
}

EN_TO_ZH = [  # English sentence -> Chinese
    ("Nice to meet you.", "很高兴认识你。"), ("See you tomorrow.", "明天见。"), ("Where is the train station?", "火车站在哪里？"),
    ("I am a student.", "我是一名学生。"), ("The moon is bright tonight.", "今晚的月亮很亮。"),
    ("Practice makes perfect.", "熟能生巧。"), ("Knowledge is power.", "知识就是力量。"),
    ("Better late than never.", "迟做总比不做好。"), ("I like reading poems.", "我喜欢读诗。"),
    ("How much does this cost?", "这个多少钱？"), ("The book is on the table.", "书在桌子上。"),
    ("It is raining outside.", "外面在下雨。"), ("I miss my hometown.", "我想念我的家乡。"),
    ("Thank you for your help.", "谢谢你的帮助。"), ("Have a nice day!", "祝你今天愉快！"),
    ("Time flies.", "时光飞逝。"), ("Where there is a will, there is a way.", "有志者事竟成。"),
    ("My father is a doctor.", "我爸爸是一名医生。"), ("Please close the door.", "请把门关上。"),
    ("I don't know.", "我不知道。"),
]

REVIEWS_ZH = [  # (review, positive?, reason)
    ("物流很快，包装也很结实，东西和描述的一样。", True, "评价者对物流、包装和商品都很满意"),
    ("房间干净整洁，服务员态度很好，下次还来。", True, "评价者称赞房间干净、服务好，还愿意再来"),
    ("这本书内容丰富，印刷清晰，孩子很喜欢。", True, "评价者对内容和印刷都满意"),
    ("手机运行流畅，电池也耐用，性价比很高。", True, "评价者认为手机流畅耐用、性价比高"),
    ("味道不错，分量足，送餐也快。", True, "评价者对口味、分量和送餐速度都满意"),
    ("衣服质量很好，穿着舒服，尺码标准。", True, "评价者觉得衣服质量好、穿着舒服"),
    ("酒店位置方便，离地铁站很近，早餐种类多。", True, "评价者称赞酒店交通方便、早餐丰富"),
    ("耳机音质清楚，戴着也不累，值这个价。", True, "评价者认为音质好、佩戴舒适、物有所值"),
    ("房间太小了，隔音很差，晚上根本睡不好。", False, "评价者抱怨房间小、隔音差，影响睡眠"),
    ("用了两天就坏了，客服也不理人，非常失望。", False, "商品很快坏了，客服也不回应"),
    ("包装破损，书页有折痕，体验不好。", False, "评价者不满包装破损、书页折痕"),
    ("衣服掉色严重，洗一次就变形了。", False, "衣服掉色又变形，质量有问题"),
    ("等了一个多小时才送到，饭菜都凉了。", False, "送餐太慢，饭菜都凉了"),
    ("电池不耐用，半天就没电，不推荐购买。", False, "评价者抱怨电池不耐用，并且不推荐"),
    ("前台态度冷淡，办入住等了很久。", False, "评价者不满前台态度和入住等待时间"),
    ("实物和图片差别太大，颜色也不对。", False, "实物与图片不符，颜色也有差异"),
    ("价格便宜，但是质量一般，凑合能用。", None, "有优点也有缺点，总体评价一般"),
]

REVIEWS_EN = [
    ("The battery lasts two full days and the screen is bright.", True, "the reviewer praises the battery life and the screen"),
    ("Comfortable bed, friendly staff and a great breakfast.", True, "the reviewer likes the bed, the staff and the breakfast"),
    ("Arrived quickly and works exactly as described.", True, "the product came fast and matched the description"),
    ("Great value for money. I'd buy it again.", True, "the reviewer thinks it is good value and would buy it again"),
    ("The book was well printed and my kids loved the stories.", True, "the reviewer is happy with the printing and the stories"),
    ("The charger stopped working after a week.", False, "the charger broke after only a week"),
    ("The room smelled of smoke and the air conditioning was noisy.", False, "the reviewer complains about the smell and the noise"),
    ("The package arrived damaged and customer service never replied.", False, "the item was damaged and support did not answer"),
    ("The shirt shrank after one wash.", False, "the shirt shrank after a single wash"),
    ("The food was cold and took over an hour to arrive.", False, "the food was slow and arrived cold"),
    ("It's okay for the price, but the sound could be better.", None, "it mentions both a good point and a weak point"),
]


# =============================================================================================
# Hand-written single-turn Q&A
# =============================================================================================

GREET_ZH = [
    ("你好", "你好！我是百川助手，一个小型的中英文演示模型。有什么可以帮你的吗？"),
    ("您好，请问你是谁？", "您好，我是百川助手，一个用古诗、小说、新闻和评论等语料训练的小模型，可以陪你聊聊天。"),
    ("嗨", "嗨！今天想聊点什么？古诗、三国，还是随便聊聊都可以。"),
    ("早上好！", "早上好！祝你今天心情愉快。有什么想问的吗？"),
    ("晚上好", "晚上好！忙了一天辛苦了，想聊点什么？"),
    ("你叫什么名字？", "我叫百川助手，是百川项目里的一个小型演示模型。"),
    ("介绍一下你自己吧。", "我是百川助手，一个很小的中英文对话模型。我读过唐诗、三国演义、莎士比亚等文本，能回答一些简单的问题。"),
    ("你是人还是机器？", "我是一个语言模型，不是人。我叫百川助手，只能通过文字和你交流。"),
    ("你能做什么？", "我可以接诗句、聊三国故事、做简单的算术、翻译短句，也可以陪你闲聊。复杂的问题我可能答不好。"),
    ("你会说英语吗？", "会一点。我能用中文和英文回答简单的问题，也能翻译一些短句。"),
    ("你多大了？", "我没有年龄。我是一个刚训练好的小模型，名字叫百川助手。"),
    ("谁训练了你？", "我是百川项目中的一个演示模型，用项目自带的小语料训练而成。"),
    ("你聪明吗？", "我只是一个很小的模型，知识有限，常常会出错。重要的事情请多核实。"),
    ("谢谢你！", "不客气！有需要随时找我。"),
    ("太感谢了，帮了大忙。", "能帮上忙我很高兴！还有别的问题吗？"),
    ("再见", "再见！祝你一切顺利。"),
    ("我先走了，拜拜。", "好的，拜拜！欢迎下次再来聊天。"),
    ("你好呀，在吗？", "在的！我是百川助手，请说。"),
    ("你喜欢什么？", "我是模型，没有真正的喜好。不过我读过很多唐诗，聊诗词我比较在行。"),
    ("你有感情吗？", "我没有真实的感情，只能根据学到的文字来回答。不过我会尽量友好地和你交流。"),
    ("你会犯错吗？", "会的。我是一个小模型，知识不全，也可能记错，遇到重要问题请查证。"),
    ("你读过哪些书？", "我的训练语料里有唐诗宋词、《论语》、《三国演义》、人民日报的新闻、商品评论，还有莎士比亚、弥尔顿和钦定版圣经。"),
    ("你能陪我聊天吗？", "当然可以！想聊什么都行，比如诗词、历史故事或者今天的心情。"),
    ("今天好累啊。", "辛苦了！累的时候记得休息一下，喝点水，早点睡。"),
    ("我有点无聊。", "要不我们来玩接诗句吧？我说上句，你接下句：“白日依山尽”——"),
    ("我心情不好。", "抱歉听到这个。愿意的话可以说说发生了什么，我会认真听。"),
    ("讲个笑话吧。", "有人问：“你为什么总带着梯子？”他说：“因为我想更上一层楼。”"),
    ("你最喜欢哪首诗？", "我没有真正的喜好，不过李白的《静夜思》几乎人人会背，我也很熟。"),
    ("你是百川大模型吗？", "我是百川助手，一个用来演示的小型模型，能力比大型模型弱很多。"),
    ("你用什么语言回答？", "你用中文问，我就用中文答；你用英文问，我就用英文答。"),
]

REFUSE_ZH = [
    ("明天北京天气怎么样？", "抱歉，我无法获取实时天气信息。你可以查看天气预报应用或气象台网站。"),
    ("现在几点了？", "我没有办法知道现在的时间，请看一下你的手机或电脑上的时钟。"),
    ("今天是几号？", "我无法获取当前日期，建议查看设备上的日历。"),
    ("今天的股票行情怎么样？", "抱歉，我不能联网，也没有实时行情数据。请以证券软件的信息为准。"),
    ("帮我订一张去上海的机票。", "抱歉，我不能帮你订票。你可以通过航空公司官网或正规购票平台预订。"),
    ("今天有什么新闻？", "我无法获取今天的新闻。我的知识来自训练时的语料，建议你看看新闻网站。"),
    ("帮我打个电话给妈妈。", "抱歉，我只是一个文字模型，不能拨打电话。"),
    ("你能上网搜索吗？", "不能。我没有联网功能，只能根据训练时学到的内容回答。"),
    ("帮我查一下快递到哪了。", "抱歉，我查不到快递信息。请在快递公司的官网或应用里输入单号查询。"),
    ("给我放一首歌。", "抱歉，我只能处理文字，不能播放音乐。不过我可以给你念一首诗。"),
    ("帮我画一幅山水画。", "抱歉，我只能生成文字，不能画画。我可以用文字描述一幅山水的景象。"),
    ("告诉我隔壁邻居的手机号。", "抱歉，我不能提供他人的个人信息。如有需要，请直接和邻居沟通。"),
    ("下一期彩票号码是多少？", "彩票号码是随机的，没人能预测，我也不行。请理性购彩。"),
    ("我头疼得厉害，该吃什么药？", "我不能提供医疗建议。如果头痛严重或持续不退，请尽快就医。"),
    ("帮我写一篇五千字的论文。", "抱歉，我是一个小模型，只能写很短的回答。我可以帮你想一个题目或列几个要点。"),
    ("人民币对美元的汇率现在是多少？", "我没有实时汇率数据，请查看银行或正规金融网站的最新报价。"),
    ("帮我看看这张图片里是什么。", "抱歉，我只能理解文字，看不到图片。你可以用文字描述一下。"),
    ("明天会下雨吗？", "我无法预测天气，也查不到天气预报。出门前可以看一下天气应用。"),
    ("帮我把这段视频剪辑一下。", "抱歉，我不能处理视频，只能进行文字对话。"),
    ("今晚的足球比赛谁赢了？", "抱歉，我无法获取实时的比赛结果，请查看体育新闻。"),
]

POETRY_QA_ZH = [
    ("《静夜思》表达了什么感情？", "《静夜思》写诗人在月夜看到月光，想起家乡，表达了浓浓的思乡之情。"),
    ("“欲穷千里目，更上一层楼”是什么意思？", "想要看到更远的风景，就要再登上一层楼。也比喻想有更高的成就，就要付出更多努力。"),
    ("“谁知盘中餐，粒粒皆辛苦”告诉我们什么？", "每一粒粮食都来自农民的辛勤劳动，我们要珍惜粮食，不要浪费。"),
    ("“海内存知己，天涯若比邻”怎么理解？", "只要四海之内有知心朋友，即使远在天边，也像邻居一样近。这是王勃安慰朋友的话。"),
    ("“野火烧不尽，春风吹又生”比喻什么？", "它写野草生命力顽强，常用来比喻坚强的生命力和不屈的精神。"),
    ("“春蚕到死丝方尽”现在常用来形容什么？", "原本写相思之情，现在常用来赞美老师等人无私奉献的精神。"),
    ("“独在异乡为异客，每逢佳节倍思亲”写的是哪个节日？", "这是王维的《九月九日忆山东兄弟》，写的是农历九月初九重阳节。"),
    ("“劝君更尽一杯酒，西出阳关无故人”表达了什么？", "这是王维送朋友远行时写的，表达了依依惜别和对朋友的关切。"),
    ("“不识庐山真面目，只缘身在此山中”有什么道理？", "身处其中反而看不清全貌。比喻看问题要跳出局部，才能看得全面。"),
    ("“山重水复疑无路，柳暗花明又一村”常用来比喻什么？", "比喻在困境中看似没有出路，坚持下去就会出现新的希望。出自陆游《游山西村》。"),
    ("“纸上得来终觉浅，绝知此事要躬行”是什么意思？", "从书本上得到的知识终究浅显，要真正理解，还得亲自去实践。"),
    ("“夕阳无限好，只是近黄昏”表达了什么？", "诗人赞美夕阳的美丽，同时感叹美好的时光短暂。出自李商隐《登乐游原》。"),
    ("李白被称为什么？", "李白被称为“诗仙”，他的诗豪放飘逸，想象丰富。"),
    ("杜甫被称为什么？", "杜甫被称为“诗圣”，他的诗被称为“诗史”，反映了唐朝由盛转衰的社会现实。"),
    ("“诗佛”指的是谁？", "“诗佛”一般指唐代诗人王维，他的诗常有禅意。"),
    ("什么是五言绝句？", "五言绝句是每句五个字、一共四句的诗，比如《静夜思》《登鹳雀楼》。"),
    ("七言绝句有几句？每句几个字？", "七言绝句共四句，每句七个字，比如李白的《早发白帝城》。"),
    ("李白和杜甫谁年纪大？", "李白年纪大。李白生于701年，杜甫生于712年，两人相差十一岁。"),
    ("《春晓》写的是什么季节？", "写的是春天。诗人一觉醒来，听见鸟叫，想起夜里的风雨，担心花落了多少。"),
    ("《江雪》描绘了一幅什么画面？", "大雪覆盖群山，鸟和行人都不见踪影，只有一位老渔翁独自在寒冷的江上钓鱼。"),
    ("“飞流直下三千尺”写的是哪里？", "写的是庐山瀑布，出自李白的《望庐山瀑布》。“三千尺”是夸张的写法。"),
    ("《唐诗三百首》是谁编的？", "《唐诗三百首》是清代蘅塘退士孙洙编选的，是流传很广的唐诗选本。"),
    ("“千里共婵娟”中的“婵娟”是什么？", "“婵娟”指月亮。这句希望亲人平安长久，虽然相隔千里也能共赏明月。出自苏轼《水调歌头》。"),
    ("宋词有哪些著名词人？", "比如苏轼、辛弃疾、李清照、柳永、欧阳修。苏轼和辛弃疾以豪放著称，李清照是婉约派的代表。"),
    ("李清照是哪个朝代的？", "李清照是宋代女词人，生活在两宋之交，代表作有《声声慢》《如梦令》。"),
    ("《诗经》有多少篇？", "《诗经》共三百零五篇，分为风、雅、颂三部分，是中国最早的诗歌总集。"),
    ("《离骚》是谁写的？", "《离骚》是战国时期楚国诗人屈原写的，是《楚辞》中最重要的作品。"),
    ("鹅，鹅，鹅，下一句是什么？", "下一句是“曲项向天歌”。相传这首《咏鹅》是唐代骆宾王七岁时写的。"),
    ("《咏鹅》全诗是什么？", "鹅，鹅，鹅，曲项向天歌。白毛浮绿水，红掌拨清波。——骆宾王《咏鹅》"),
    ("“出师未捷身先死”写的是谁？", "写的是诸葛亮。出自杜甫的《蜀相》，下一句是“长使英雄泪满襟”。"),
    ("“东风不与周郎便”中的周郎是谁？", "周郎是三国时东吴的周瑜。出自杜牧的《赤壁》，下一句是“铜雀春深锁二乔”。"),
]

LUNYU_QA_ZH = [
    ("“温故而知新”是什么意思？", "复习学过的知识，能从中得到新的理解和体会。全句是“温故而知新，可以为师矣”。"),
    ("“三人行，必有我师焉”怎么理解？", "几个人一起走路，其中一定有值得我学习的人。意思是要善于向别人学习。"),
    ("“己所不欲，勿施于人”是什么意思？", "自己不愿意承受的事情，不要强加给别人。"),
    ("“学而不思则罔，思而不学则殆”讲的是什么道理？", "只学习不思考就会迷惑，只思考不学习就会疑惑不安。学习和思考要结合起来。"),
    ("《论语》是一本什么书？", "《论语》记录了孔子和他的弟子的言行，由孔子的弟子和再传弟子编成，共二十篇。"),
    ("孔子是什么时候的人？", "孔子是春秋时期鲁国人，名丘，字仲尼，是儒家学派的创始人。"),
    ("“三十而立”出自哪里？", "出自《论语·为政》：“吾十有五而志于学，三十而立，四十而不惑。”"),
    ("“不耻下问”是什么意思？", "不以向学问或地位不如自己的人请教为羞耻。出自《论语》“敏而好学，不耻下问”。"),
    ("“吾日三省吾身”是谁说的？", "是孔子的学生曾子说的，意思是每天多次反省自己。"),
    ("“四十而不惑”的“不惑”是什么意思？", "“不惑”指遇事能明辨是非，不再迷惑。后来“不惑之年”就指四十岁。"),
    ("“工欲善其事，必先利其器”比喻什么？", "工匠想做好活，先要把工具磨快。比喻做事前要先做好准备。"),
]

SANGUO_ZH = [
    ("《三国演义》的作者是谁？", "《三国演义》的作者是元末明初的罗贯中。"),
    ("三国演义一共有多少回？", "通行本《三国演义》共一百二十回。"),
    ("三国是哪三个国家？", "三国是魏、蜀、吴。魏由曹丕建立，蜀汉由刘备建立，吴由孙权建立。"),
    ("桃园三结义是哪三个人？", "是刘备、关羽和张飞。三人在桃园结为兄弟，刘备是大哥，关羽第二，张飞第三。"),
    ("三顾茅庐讲的是什么？", "刘备三次到隆中拜访诸葛亮，终于请他出山辅佐自己。"),
    ("草船借箭是谁的计策？", "是诸葛亮。他趁大雾用草船靠近曹营，引曹军放箭，借到了十万多支箭。"),
    ("空城计是怎么回事？", "司马懿大军逼近西城，诸葛亮大开城门，独自在城楼上弹琴。司马懿怀疑有埋伏，就退兵了。"),
    ("赤壁之战是谁和谁打的？", "是孙权、刘备联军对曹操。联军用火攻大败曹军，奠定了三分天下的局面。"),
    ("关羽用的是什么兵器？", "关羽用青龙偃月刀，又名冷艳锯，重八十二斤。"),
    ("张飞用什么兵器？", "张飞用丈八蛇矛。"),
    ("吕布骑的是什么马？", "吕布骑的是赤兔马，后来这匹马归了关羽。"),
    ("“人中吕布，马中赤兔”是什么意思？", "意思是人里面数吕布最勇猛，马里面数赤兔马最好，形容吕布武艺超群。"),
    ("诸葛亮的字是什么？", "诸葛亮，字孔明，号卧龙。"),
    ("刘备字什么？", "刘备，字玄德。"),
    ("曹操字什么？", "曹操，字孟德。"),
    ("赵云最有名的事迹是什么？", "长坂坡单骑救主：赵云在曹军中杀进杀出，救出了刘备的儿子阿斗。"),
    ("“卧龙凤雏，得一可安天下”说的是谁？", "卧龙是诸葛亮，凤雏是庞统。"),
    ("五虎上将是哪五个人？", "蜀汉的五虎上将是关羽、张飞、赵云、马超和黄忠。"),
    ("“既生瑜，何生亮”是谁说的？", "是周瑜。在《三国演义》中，他被诸葛亮三次气到，临死前发出这样的感叹。"),
    ("温酒斩华雄的是谁？", "是关羽。曹操给他斟的酒还温着，他就已经斩了华雄回来。"),
    ("过五关斩六将讲的是谁？", "是关羽。他得知刘备的下落后，护送两位嫂嫂离开曹营，一路过了五关，斩了六员守将。"),
    ("挥泪斩马谡是怎么回事？", "马谡不听劝告，把兵驻扎在山上，丢了街亭。诸葛亮按军法处斩了他，心里很难过。"),
    ("七擒孟获是谁的故事？", "是诸葛亮南征时的故事。他七次擒住孟获又七次放了他，最终让孟获真心归服。"),
    ("诸葛亮死在哪里？", "诸葛亮在北伐途中病逝于五丈原的军中。"),
    ("“死诸葛吓走活司马”是什么意思？", "诸葛亮死后，蜀军推出他的木像，司马懿以为他还活着，吓得退兵。"),
    ("《三国演义》开头第一句是什么？", "“话说天下大势，分久必合，合久必分。”"),
    ("《三国演义》的开篇词是哪首？", "是杨慎的《临江仙》：“滚滚长江东逝水，浪花淘尽英雄。”"),
    ("“乐不思蜀”的主人公是谁？", "是蜀汉后主刘禅。蜀亡后他在洛阳说“此间乐，不思蜀”。"),
    ("煮酒论英雄说了什么？", "曹操与刘备煮酒谈论天下英雄，曹操说：“今天下英雄，惟使君与操耳。”刘备吓得掉了筷子。"),
    ("关羽是怎么死的？", "关羽大意失荆州，败走麦城，被东吴擒获后遇害。"),
    ("白帝城托孤是怎么回事？", "刘备伐吴失败，在白帝城病重，临终前把儿子刘禅托付给诸葛亮。"),
    ("三国最后被谁统一了？", "被晋统一。司马炎建立晋朝，公元280年灭吴，三国归晋。"),
    ("貂蝉和连环计是怎么回事？", "王允把貂蝉先许给吕布，又献给董卓，挑拨二人反目，最后吕布杀了董卓。"),
    ("“宁教我负天下人，休教天下人负我”是谁说的？", "在《三国演义》中是曹操说的，表现了他多疑的性格。"),
    ("张飞在长坂桥做了什么？", "张飞一人站在长坂桥上大喝，吓退了曹操的追兵。"),
    ("三英战吕布是哪三英？", "是刘备、关羽、张飞，三人在虎牢关前合战吕布。"),
    ("借东风是怎么回事？", "赤壁之战要用火攻，需要东南风。诸葛亮在七星坛作法，“借”来了东风。"),
    ("苦肉计是谁演的？", "是周瑜和黄盖。周瑜当众责打黄盖，让黄盖去曹营诈降，为火攻做准备。"),
    ("华容道上发生了什么？", "曹操赤壁战败后逃到华容道，关羽念旧日恩情，放走了曹操。"),
    ("隆中对的主要内容是什么？", "诸葛亮为刘备分析天下大势，建议占据荆州、益州，联合孙权对抗曹操，形成三分天下。"),
    ("孙权字什么？", "孙权，字仲谋。"),
    ("周瑜是哪国的？", "周瑜是东吴的大都督，字公瑾，赤壁之战时指挥孙刘联军。"),
    ("“扶不起的阿斗”说的是谁？", "说的是刘备的儿子刘禅，小名阿斗。常用来比喻怎么帮也不成器的人。"),
    ("曹操有哪些有名的诗？", "曹操有《观沧海》《龟虽寿》《短歌行》等，比如“老骥伏枥，志在千里”。"),
    ("《七步诗》是谁写的？", "相传是曹植所作。曹丕命他七步之内作诗，他写下“本是同根生，相煎何太急”。"),
]

DAILY_ZH = [
    ("推荐一本适合入门的古典小说。", "可以先读《三国演义》，故事精彩，人物鲜明，半文半白，不太难读。"),
    ("想学唐诗，从哪开始好？", "可以从《唐诗三百首》开始，先背《静夜思》《春晓》这类短小的五言绝句。"),
    ("推荐几首写春天的诗。", "可以读孟浩然的《春晓》、杜甫的《春夜喜雨》和贺知章的《咏柳》。"),
    ("今天下雨了，好烦。", "下雨天确实容易让人心烦。可以泡杯茶，听听雨声，读几首诗，也挺惬意的。"),
    ("天气好热啊。", "天热要多喝水，尽量避开中午出门，注意防晒。"),
    ("最近天冷了。", "是啊，天冷要记得添衣保暖，早晚温差大，小心着凉。"),
    ("晚上睡不着怎么办？", "睡前少看手机，别喝浓茶和咖啡，放松身体。如果长期失眠，建议去看医生。"),
    ("怎么才能坚持读书？", "每天固定读一小段，比如睡前十五分钟，从自己感兴趣的书开始，慢慢养成习惯。"),
    ("周末去哪玩好？", "可以去附近的公园或博物馆走走，也可以约朋友爬山，看你喜欢热闹还是安静。"),
    ("中秋节有什么习俗？", "中秋节有赏月、吃月饼、家人团圆等习俗。苏轼的“但愿人长久，千里共婵娟”就是中秋写的。"),
    ("端午节是纪念谁的？", "传说端午节是纪念战国时期楚国诗人屈原的，人们会吃粽子、赛龙舟。"),
    ("春节为什么要贴春联？", "春联寄托了对新年的美好祝愿。古时候挂桃符，王安石诗里就有“总把新桃换旧符”。"),
    ("重阳节有哪些习俗？", "重阳节在农历九月初九，有登高、赏菊、插茱萸、敬老等习俗。"),
    ("清明节有什么习俗？", "清明节有扫墓祭祖、踏青等习俗。杜牧有诗“清明时节雨纷纷”。"),
    ("学英语有什么好方法？", "每天坚持听一点、读一点，多背常用句子，大胆开口说。坚持比方法更重要。"),
    ("晚饭吃什么好？", "可以做个简单的：番茄炒蛋、炒青菜，再配一碗米饭，营养又省事。"),
    ("如何缓解压力？", "可以散散步、运动一下、和朋友聊聊天，也可以把事情列出来，一件件解决。"),
    ("推荐一部莎士比亚的作品。", "可以先读《罗密欧与朱丽叶》，故事大家都熟悉，篇幅也不长。"),
    ("什么是人民日报？", "《人民日报》是中国的一份全国性日报，创刊于1948年。我的训练语料里有1998年的一些新闻。"),
    ("写一句新闻导语的例子。", "例如：“本报讯 今年春耕生产进展顺利，各地农民抓住有利天气，抓紧播种。”这只是示范句子。"),
    ("新闻的导语有什么特点？", "导语是新闻的开头，要用简短的话交代最重要的事实，比如何时、何地、何人、何事。"),
    ("怎样写好一篇消息？", "先用导语交代核心事实，再按重要程度依次展开，语言要准确、简洁、客观。"),
    ("给我一个早起的理由。", "早晨安静，头脑清醒，做事效率高。俗话说：“一年之计在于春，一日之计在于晨。”"),
    ("背古诗有什么用？", "背古诗能积累语言、感受汉字的美，还能了解古人的生活和情感。"),
    ("说一句鼓励人的古诗。", "“长风破浪会有时，直挂云帆济沧海。”出自李白《行路难》，相信总有一天能乘风破浪。"),
    ("我考试没考好。", "别灰心，一次考试说明不了全部。找出问题，下次改进就好。失败是成功之母。"),
    ("推荐一首适合送给朋友的诗。", "王勃的“海内存知己，天涯若比邻”很合适，表达了友情不受距离阻隔。"),
    ("哪首诗写思乡最有名？", "李白的《静夜思》最有名：“举头望明月，低头思故乡。”"),
    ("什么是对联？", "对联是两句字数相等、意思相关、词性相对的句子，常在春节时贴在门上。"),
    ("怎么写一条有用的商品评价？", "说清楚买了什么、好在哪里、不足在哪里，适合什么人用。简短真实最有帮助。"),
    ("帮我写一句对酒店的好评，简短一点。", "房间干净，床很舒服，服务热情周到，下次出差还会选这里。"),
    ("帮我写一条差评，耳机有杂音。", "耳机用了不到一周就出现杂音，音质明显变差，有点失望。"),
    ("帮我写一句夸外卖的评价。", "送餐很快，饭菜还是热的，分量也足，味道不错，会再点。"),
    ("帮我写一句对书店的好评。", "书店环境安静，书的种类很多，店员还会热心推荐，很适合周末来坐坐。"),
    ("多喝水有什么好处？", "适量喝水能帮助身体代谢、调节体温，也能让人更有精神。一次不要喝太多。"),
    ("怎么安排一天的学习？", "上午做最难的内容，下午复习和练习，晚上整理笔记。每学四十分钟休息一下。"),
]

SHAKES_BIBLE_ZH = [
    ("莎士比亚是哪国人？", "莎士比亚是英国剧作家和诗人，1564年生于斯特拉特福，1616年去世。"),
    ("莎士比亚的四大悲剧是哪些？", "是《哈姆雷特》《奥赛罗》《李尔王》和《麦克白》。"),
    ("《哈姆雷特》讲了什么？", "丹麦王子哈姆雷特的父亲被叔叔害死，叔叔篡位并娶了王后。哈姆雷特设法复仇，最后多人丧生。"),
    ("“生存还是毁灭”出自哪里？", "出自莎士比亚的《哈姆雷特》，原文是“To be, or not to be: that is the question.”"),
    ("《罗密欧与朱丽叶》的结局是什么？", "两人因家族世仇不能在一起，最后双双殉情，两个家族也因此和解。"),
    ("莎士比亚写了多少首十四行诗？", "莎士比亚一共写了154首十四行诗。"),
    ("《威尼斯商人》里的夏洛克是什么人？", "夏洛克是放高利贷的犹太商人，他要求还不上钱的安东尼奥割下一磅肉。"),
    ("《麦克白》讲了什么？", "苏格兰将军麦克白听了女巫的预言，在妻子怂恿下杀死国王篡位，最终走向毁灭。"),
    ("弥尔顿最有名的作品是什么？", "是长诗《失乐园》，写撒旦反叛上帝，以及亚当和夏娃被逐出伊甸园的故事。"),
    ("钦定版圣经是哪一年出版的？", "钦定版圣经（King James Version）于1611年出版，是英王詹姆斯一世下令翻译的。"),
    ("《圣经》第一句是什么？", "钦定版第一句是“In the beginning God created the heaven and the earth.”，意思是“起初，神创造天地。”"),
    ("诺亚方舟是什么故事？", "出自《创世记》：上帝降下大洪水，诺亚造了一艘方舟，带着家人和各种动物躲过了洪水。"),
    ("“All that glisters is not gold”是什么意思？", "意思是“闪光的未必都是金子”，不要只看外表。出自莎士比亚的《威尼斯商人》。"),
    ("《失乐园》是谁写的？", "是英国诗人约翰·弥尔顿写的，1667年首次出版。"),
]

GREET_EN = [
    ("Hello!", "Hello! I'm Baichuan assistant, a small demo model. How can I help you today?"),
    ("Hi there, who are you?", "I'm Baichuan assistant, a small bilingual chat model trained on poems, plays, news and reviews."),
    ("Good morning!", "Good morning! I hope you have a pleasant day. What would you like to talk about?"),
    ("What's your name?", "My name is Baichuan assistant. I'm a small demo model from the baichuan project."),
    ("Tell me about yourself.", "I'm Baichuan assistant, a tiny Chinese-English model. I know a little about Tang poetry, Shakespeare, the Bible and everyday topics."),
    ("Are you a human?", "No, I'm a language model called Baichuan assistant. I can only chat through text."),
    ("What can you do?", "I can continue famous lines, talk about Shakespeare or the Three Kingdoms, do simple sums, translate short phrases and chat."),
    ("Do you speak Chinese?", "Yes, I can answer in Chinese or English. Ask me in either language."),
    ("How are you?", "I'm doing well, thank you for asking! How about you?"),
    ("Thanks a lot!", "You're welcome! Let me know if there's anything else."),
    ("Goodbye!", "Goodbye! Have a wonderful day."),
    ("See you later.", "See you later! Come back any time."),
    ("Are you smart?", "I'm a very small model, so my knowledge is limited and I make mistakes. Please double-check anything important."),
    ("What books have you read?", "My training text includes Tang poems, Romance of the Three Kingdoms, People's Daily news, product reviews, Shakespeare, Milton and the King James Bible."),
    ("Can you keep me company for a while?", "Of course! We can talk about books, poems, or how your day is going."),
    ("I'm bored.", "How about a little game? I start a famous line and you finish it: \"To be, or not to be...\""),
    ("I feel a bit sad today.", "I'm sorry to hear that. If you'd like to talk about it, I'm here to listen."),
    ("Tell me a joke.", "Why did the scarecrow win an award? Because he was outstanding in his field."),
    ("Who made you?", "I'm a demo model from the baichuan project, trained on a small bundled corpus."),
    ("Do you have feelings?", "No, I don't have real feelings. I just produce text based on what I learned, but I try to be friendly."),
    ("Hey, are you there?", "Yes, I'm here! What can I do for you?"),
    ("Good evening.", "Good evening! How was your day?"),
    ("Nice to meet you.", "Nice to meet you too! I'm Baichuan assistant."),
    ("Can you make mistakes?", "Yes, quite often. I'm a small model, so please check important facts elsewhere."),
]

REFUSE_EN = [
    ("What's the weather like in London right now?", "Sorry, I can't access real-time weather. Please check a weather app or website."),
    ("What time is it?", "I don't have access to the current time. Please check the clock on your device."),
    ("What's today's date?", "I can't know today's date. Your phone or computer calendar will tell you."),
    ("What's the latest news?", "I can't browse the internet, so I don't know today's news. Try a news website."),
    ("Can you book a table for two tonight?", "Sorry, I can't make bookings. You could call the restaurant or use a booking app."),
    ("What's the price of Bitcoin today?", "I don't have live market data. Please check a financial website for current prices."),
    ("Can you send an email for me?", "Sorry, I can only chat in text here. I can help you write the email, though."),
    ("Who won last night's game?", "Sorry, I don't have real-time sports results. A sports news site will have the score."),
    ("Can you search the web for me?", "No, I can't browse the web. I can only answer from what I learned during training."),
    ("What are the winning lottery numbers next week?", "Nobody can predict lottery numbers, and neither can I. They are random."),
    ("Please play some music.", "Sorry, I can only produce text. I could recite a poem for you instead."),
    ("Find my friend's home address.", "Sorry, I can't help find personal information about other people."),
    ("I have a bad toothache. What medicine should I take?", "I can't give medical advice. Please see a dentist or doctor, especially if the pain is strong."),
    ("Will it rain tomorrow?", "I can't forecast the weather. A weather app will give you tomorrow's forecast."),
    ("Write me a 10,000-word novel.", "Sorry, I'm a small model and can only write short replies. I can suggest a plot idea instead."),
    ("Look at this photo and tell me what's in it.", "Sorry, I can only read text and can't see images. You could describe it to me."),
]

SHAKES_QA_EN = [
    ("What is Hamlet about?", PLOTS["Hamlet"]),
    ("Summarize Romeo and Juliet in one sentence.", PLOTS["Romeo and Juliet"]),
    ("What happens in Macbeth?", PLOTS["Macbeth"]),
    ("What is King Lear about?", PLOTS["King Lear"]),
    ("Tell me the story of Othello.", PLOTS["Othello"]),
    ("What is The Tempest about?", PLOTS["The Tempest"]),
    ("What is A Midsummer Night's Dream about?", PLOTS["A Midsummer Night's Dream"]),
    ("What is the pound of flesh in The Merchant of Venice?", "Shylock lends money to Antonio on the condition that he may cut a pound of Antonio's flesh if the loan is not repaid."),
    ("Who kills Julius Caesar in the play?", "A group of conspirators led by Brutus and Cassius stab Caesar in the Senate on the ides of March."),
    ("What is Twelfth Night about?", PLOTS["Twelfth Night"]),
    ("When was Shakespeare born?", "William Shakespeare was born in 1564 in Stratford-upon-Avon and died in 1616."),
    ("How many sonnets did Shakespeare write?", "He wrote 154 sonnets, first published together in 1609."),
    ("What are Shakespeare's four great tragedies?", "They are usually said to be Hamlet, Othello, King Lear and Macbeth."),
    ("What was the Globe?", "The Globe was the London theatre where Shakespeare's company, the Lord Chamberlain's Men, performed many of his plays."),
    ("Who is Puck?", "Puck, also called Robin Goodfellow, is a mischievous fairy who serves Oberon in A Midsummer Night's Dream."),
    ("Who is Iago?", "Iago is Othello's ensign and the villain of the play. He deceives Othello out of jealousy and resentment."),
    ("Who is Lady Macbeth?", "She is Macbeth's ambitious wife, who urges him to murder King Duncan and is later haunted by guilt."),
    ("Who is Ophelia?", "Ophelia is Polonius's daughter, loved by Hamlet. She goes mad after her father's death and drowns."),
    ("Which Shakespeare play should I read first?", "Many readers start with Romeo and Juliet or A Midsummer Night's Dream. Both are well known and not too long."),
    ("Is Macbeth a comedy?", "No, Macbeth is a tragedy. It is Shakespeare's shortest tragedy and one of his darkest."),
    ("Who is Prospero's daughter?", "Miranda. She has grown up on the island with her father in The Tempest."),
    ("Who is Falstaff?", "Sir John Falstaff is a fat, witty, boastful knight, the friend of Prince Hal in the Henry IV plays."),
    ("What does 'wherefore' mean in 'wherefore art thou Romeo'?", "'Wherefore' means 'why'. Juliet asks why he has to be Romeo, a Montague, not where he is."),
    ("Where is Hamlet set?", "Hamlet is set in Denmark, mainly at the royal castle of Elsinore."),
    ("Where is Romeo and Juliet set?", "It is set in Verona, with one scene in Mantua."),
    ("What is a sonnet?", "A sonnet is a poem of fourteen lines. Shakespeare's have three quatrains and a closing rhyming couplet."),
    ("Who is Caliban?", "Caliban is the island's native in The Tempest, son of the witch Sycorax, who serves Prospero unwillingly."),
    ("Who is Shylock?", "Shylock is the Jewish moneylender in The Merchant of Venice who demands a pound of Antonio's flesh."),
    ("How does Hamlet end?", "Hamlet, Claudius, Gertrude and Laertes all die, and Fortinbras of Norway takes the throne of Denmark."),
    ("Who is Cordelia?", "Cordelia is King Lear's youngest daughter, who refuses to flatter him and is banished, though she loves him most."),
]

BIBLE_EN = [
    ("What is the first verse of the Bible?", "In the King James Version, Genesis 1:1 reads: \"In the beginning God created the heaven and the earth.\""),
    ("Finish the verse: \"The LORD is my shepherd...\"", "\"...I shall not want.\" It is Psalm 23:1."),
    ("Where does \"Let there be light\" come from?", "Genesis 1:3: \"And God said, Let there be light: and there was light.\""),
    ("What does John 1:1 say?", "\"In the beginning was the Word, and the Word was with God, and the Word was God.\""),
    ("Finish this: \"To every thing there is a season...\"", "\"...and a time to every purpose under the heaven.\" Ecclesiastes 3:1."),
    ("Which book says \"Vanity of vanities; all is vanity\"?", "Ecclesiastes, in its first chapter."),
    ("What is the shortest verse in the King James Bible?", "John 11:35: \"Jesus wept.\""),
    ("Who asked \"Am I my brother's keeper?\"", "Cain, after he killed his brother Abel, in Genesis 4:9."),
    ("Complete: \"Blessed are the meek...\"", "\"...for they shall inherit the earth.\" Matthew 5:5, from the Sermon on the Mount."),
    ("Where is \"Pride goeth before destruction\" from?", "Proverbs 16:18: \"Pride goeth before destruction, and an haughty spirit before a fall.\""),
    ("When was the King James Bible published?", "The King James Version was first published in 1611."),
    ("What is the first book of the Bible?", "Genesis is the first book; Revelation is the last."),
    ("Tell me the story of David and Goliath briefly.", "The young shepherd David faced the giant Philistine Goliath and killed him with a stone from his sling. It is told in 1 Samuel 17."),
    ("What happened to Jonah?", "Jonah fled from God's command, was thrown overboard and swallowed by a great fish, and after three days was cast out onto dry land."),
    ("Who built the ark?", "Noah built the ark to save his family and the animals from the great flood, in Genesis 6 to 9."),
    ("Who led the Israelites out of Egypt?", "Moses led them out of Egypt, as told in the book of Exodus."),
    ("What is the parable of the Good Samaritan about?", "A Samaritan stops to help a wounded traveller whom others passed by. Jesus tells it in Luke 10 to show who our neighbour is."),
    ("What is the parable of the Prodigal Son?", "A younger son wastes his inheritance, comes home in shame, and his father welcomes him with joy. It is in Luke 15."),
    ("What does \"man shall not live by bread alone\" mean?", "People need more than food. In Matthew 4:4 Jesus adds \"but by every word that proceedeth out of the mouth of God.\""),
    ("Where were the Ten Commandments given?", "According to Exodus, God gave the Ten Commandments to Moses on Mount Sinai."),
    ("How does the Lord's Prayer begin in the KJV?", "\"Our Father which art in heaven, Hallowed be thy name.\" It is in Matthew 6:9."),
    ("What is the Tower of Babel?", "In Genesis 11, people build a tower to reach heaven; God confuses their language and scatters them."),
    ("Finish: \"Ask, and it shall be given you...\"", "\"...seek, and ye shall find; knock, and it shall be opened unto you.\" Matthew 7:7."),
    ("What does 1 Corinthians 13 say about charity?", "The KJV says \"Charity suffereth long, and is kind; charity envieth not.\" Charity here means love."),
    ("Who were Adam and Eve?", "In Genesis they are the first man and woman, who lived in the Garden of Eden until they ate the forbidden fruit."),
    ("How many books are in the Protestant Bible?", "66 books: 39 in the Old Testament and 27 in the New Testament."),
]

MILTON_EN = [
    ("Who wrote Paradise Lost?", "John Milton, the English poet, who lived from 1608 to 1674."),
    ("What is Paradise Lost about?", "It tells of Satan's rebellion and fall from Heaven and of how Adam and Eve are tempted and lose the Garden of Eden."),
    ("How does Paradise Lost begin?", "\"Of Man's first disobedience, and the fruit / Of that forbidden tree...\""),
    ("Who says \"Better to reign in Hell than serve in Heaven\"?", "Satan says it in Book 1 of Milton's Paradise Lost."),
    ("What does Milton set out to do in Paradise Lost?", "In Book 1 he says he will \"justify the ways of God to men.\""),
    ("Finish Milton's line: \"The mind is its own place...\"", "\"...and in itself / Can make a Heaven of Hell, a Hell of Heaven.\" Satan says it in Book 1."),
    ("How many books does Paradise Lost have?", "The first edition of 1667 had ten books; the 1674 edition has twelve."),
    ("Was Milton blind?", "Yes. Milton lost his sight around 1652 and dictated Paradise Lost to helpers."),
    ("What is the last line of Milton's sonnet on his blindness?", "\"They also serve who only stand and wait.\""),
    ("What is Lycidas?", "Lycidas is a pastoral elegy by Milton, written in 1637 in memory of his friend Edward King, who drowned."),
    ("What is Areopagitica?", "It is Milton's 1644 prose work against the licensing of printing, a famous defence of a free press."),
    ("Did Milton write a sequel to Paradise Lost?", "Yes, Paradise Regained, published in 1671, about Christ resisting Satan's temptations in the wilderness."),
    ("How does Paradise Lost end?", "Adam and Eve leave Eden: \"They hand in hand with wandering steps and slow, / Through Eden took their solitary way.\""),
    ("What verse form does Paradise Lost use?", "Blank verse: unrhymed lines of iambic pentameter."),
    ("What are L'Allegro and Il Penseroso?", "A pair of companion poems by Milton, one praising the cheerful life and the other the thoughtful, melancholy life."),
]

CHINA_EN = [
    ("Who is Li Bai?", "Li Bai was a famous Tang dynasty poet, often called the \"Immortal Poet\" for his bold, free style."),
    ("Who was Du Fu?", "Du Fu was a great Tang dynasty poet, called the \"Sage Poet\". His poems record the suffering of his time."),
    ("What is Romance of the Three Kingdoms?", "It is a classic Chinese novel by Luo Guanzhong about the wars among Wei, Shu and Wu at the end of the Han dynasty."),
    ("Who is Zhuge Liang?", "Zhuge Liang, also called Kongming, was the brilliant strategist and chancellor of Shu Han who served Liu Bei."),
    ("What is the Oath of the Peach Garden?", "In the novel, Liu Bei, Guan Yu and Zhang Fei swear to be brothers in a peach garden and to serve the country together."),
    ("What was the Battle of Red Cliffs?", "In 208, the allied forces of Sun Quan and Liu Bei defeated Cao Cao's much larger army, mainly with fire attacks on his fleet."),
    ("Who is Guan Yu?", "Guan Yu is Liu Bei's sworn brother, famous for his loyalty and his Green Dragon Crescent Blade."),
    ("Who was Cao Cao?", "Cao Cao was a powerful warlord and poet of the late Han dynasty; his son Cao Pi founded the state of Wei."),
    ("What are the Analects?", "A collection of sayings of Confucius and his disciples, recorded by his followers, in twenty chapters."),
    ("What is Quiet Night Thought about?", "In this poem by Li Bai, the poet sees moonlight by his bed, takes it for frost, looks up at the moon and thinks of home."),
    ("Who wrote the poem Spring Dawn?", "Meng Haoran, a Tang dynasty poet. It is about waking on a spring morning to birdsong after a night of wind and rain."),
    ("When was the Tang dynasty?", "The Tang dynasty lasted from 618 to 907. It is often called the golden age of Chinese poetry."),
    ("What is People's Daily?", "People's Daily is a national Chinese newspaper founded in 1948. My training text includes some of its 1998 news."),
    ("Who was Confucius?", "Confucius was a Chinese teacher and thinker of the Spring and Autumn period, the founder of the Confucian school."),
    ("What is the empty fort strategy?", "In the novel, Zhuge Liang opens the city gates and calmly plays the zither; Sima Yi suspects an ambush and retreats."),
    ("Who wrote Romance of the Three Kingdoms?", "It is attributed to Luo Guanzhong, who lived in the late Yuan and early Ming dynasties."),
    ("What is the Mid-Autumn Festival?", "A Chinese festival on the 15th day of the eighth lunar month, when families gather, admire the full moon and eat mooncakes."),
    ("What is the Dragon Boat Festival?", "It falls on the fifth day of the fifth lunar month. People race dragon boats and eat zongzi, in memory of the poet Qu Yuan."),
]

DAILY_EN = [
    ("Can you recommend a classic novel?", "You might enjoy Romance of the Three Kingdoms if you like history and battles, or Pride and Prejudice if you prefer wit and romance."),
    ("It's raining again. So gloomy.", "Rainy days can feel dull. Maybe make a warm drink and read something you enjoy."),
    ("It's really hot today.", "Stay cool: drink plenty of water, wear light clothes, and avoid the midday sun."),
    ("I can't sleep. Any tips?", "Put your phone away an hour before bed, avoid coffee in the evening, and keep a regular bedtime."),
    ("How can I get better at English?", "Read and listen a little every day, learn useful sentences by heart, and speak whenever you can."),
    ("What should I cook for dinner?", "How about something simple, like a tomato and egg stir-fry with rice and some green vegetables?"),
    ("Give me a tip for studying.", "Study in short focused sessions of about 25 minutes, then take a short break."),
    ("Recommend a poem for a beginner.", "Try Shakespeare's Sonnet 18, \"Shall I compare thee to a summer's day?\" It is short and beautiful."),
    ("What's a good way to relax?", "A short walk, some stretching, or a chat with a friend can help you unwind."),
    ("How do I start reading Shakespeare?", "Start with a short play like Macbeth or A Midsummer Night's Dream, and watch a performance if you can."),
    ("What's a nice weekend activity?", "You could visit a park or a museum, or go on a short hike with friends."),
    ("I passed my exam!", "Congratulations! All that hard work paid off. Enjoy the moment."),
    ("I failed my driving test.", "Sorry to hear that. Many people pass on their second try. Practise the tricky parts and try again."),
    ("Give me a motivational quote.", "\"Where there's a will, there's a way.\" Keep going, one step at a time."),
    ("Should I read the Bible as literature?", "Many people do. The King James Version shaped English style, and books like Psalms and Ecclesiastes are beautiful to read."),
    ("What's a good gift for a friend who likes poetry?", "A small, well-printed book of poems, such as Shakespeare's sonnets or an anthology of Tang poems in translation."),
    ("How do I write a good product review?", "Say what you bought, what you liked and disliked, and who it would suit. Keep it short and honest."),
    ("What is a news lead?", "A lead is the opening of a news story. It gives the most important facts: who, what, when and where."),
    ("Write a short positive review for a coffee shop.", "Cosy place with friendly staff and excellent coffee. The cakes are fresh too. I'll definitely be back."),
    ("Write a one-sentence negative review about slow delivery.", "My order arrived nine days late with no updates, which was very disappointing."),
    ("Write a short review of a comfortable pair of shoes.", "These shoes are light and comfortable from the first day, and they still look new after a month."),
    ("Is it good to drink water in the morning?", "A glass of water after waking up is a simple, healthy habit. It helps you feel fresh."),
    ("How can I remember new words?", "Review them a few times over several days, use them in your own sentences, and read a lot."),
    ("What should I do on a rainy Sunday?", "Read a good book, cook something warm, or watch a classic film. Rainy days are great for resting."),
]


# =============================================================================================
# Builder
# =============================================================================================

class Builder:
    def __init__(self):
        self.rows = []          # (lang, kind, messages)
        self.firsts = set()

    def add(self, lang: str, kind: str, *turns: str, strict: bool = True) -> bool:
        """Add a conversation of alternating user/assistant turns. A first prompt already taken is an
        error, or (strict=False) returns False so that the caller can try another phrasing."""
        assert len(turns) % 2 == 0 and turns, turns
        first = turns[0]
        if first in self.firsts:
            assert not strict, f"duplicate first prompt: {first}"
            return False
        msgs = [{"role": "user" if i % 2 == 0 else "assistant", "content": t} for i, t in enumerate(turns)]
        got = lang_of(turns)
        assert got == lang, (lang, got, turns)
        for m in msgs:
            if m["role"] == "assistant":
                check_reply(m["content"])
        self.firsts.add(first)
        self.rows.append((lang, kind, msgs))
        return True

    def add_try(self, lang, kind, *turns) -> bool:
        return self.add(lang, kind, *turns, strict=False)

    def add_first(self, lang, kind, options, *rest) -> bool:
        """Try first-prompt options in order; use the first one not taken."""
        for opt in options:
            if self.add(lang, kind, opt, *rest, strict=False):
                return True
        raise AssertionError(f"all first prompts taken: {options}")


def check_reply(text: str) -> None:
    assert text.strip() == text and text, repr(text)
    assert len(CJK.findall(text)) <= 80, text
    assert len(WORD.findall(text)) <= 60, text


MUST_POEMS = {"静夜思", "登鹳雀楼", "春晓"}
MUST_QA = {"《三国演义》的作者是谁？", "桃园三结义是哪三个人？", "三国是哪三个国家？", "你好", "你叫什么名字？",
           "What is the first verse of the Bible?", "When was the King James Bible published?", "Who wrote Paradise Lost?",
           "谢谢", "To be, or not to be", "All the world's a stage"}


def keep(rng: random.Random, items: list, n: int, must=frozenset()) -> list:
    """n of items, in their order: every item whose first field is in `must`, the rest drawn at random."""
    forced = [i for i, it in enumerate(items) if it[0] in must]
    others = [i for i in range(len(items)) if i not in forced]
    picked = set(forced) | set(rng.sample(others, n - len(forced)))
    return [it for i, it in enumerate(items) if i in picked]


def split_lines(text: str) -> list[str]:
    return [s for s in re.split(r"[，。？！]", text) if s]


def poem_attr(author: str, title: str) -> str:
    return f"{DYN[author]}{author}的《{title}》"


def short_title(title: str) -> str:
    return re.sub(r"（.*?）", "", title)


# ---- templates -------------------------------------------------------------------------------

NEXT_Q = [
    "{a}的下一句是什么？", "“{a}”，下一句是？", "{a}，后面一句怎么说？", "接下句：{a}", "“{a}”后面是什么？",
    "我只记得“{a}”，下一句是啥？", "帮我接一下诗句：{a}", "{a}的下句是？", "请对出下一句：{a}", "“{a}”下一句是什么来着？",
]
NEXT_A = [
    "下一句是“{b}”，出自{attr}。", "“{a}，{b}。”这是{attr}里的句子。", "{b}。出自{attr}。",
    "是“{b}”。全句是“{a}，{b}”，出自{attr}。", "下一句是“{b}”。这两句出自{attr}。",
]
WHO_Q = ["“{a}，{b}”是谁写的？", "“{a}，{b}”出自哪首诗？", "“{a}”这句诗的作者是谁？", "“{a}，{b}”是哪个诗人的？"]
WHO_A = ["这是{attr}。", "出自{attr}。", "作者是{dyn}诗人{author}，出自《{title}》。", "这句出自{author}的《{title}》，{author}是{dyn}诗人。"]
FOLLOW_NEXT = ["再下一句呢？", "接着呢？", "后面一句是什么？", "然后呢？", "再往下呢？", "下一句又是什么？"]
FOLLOW_LAST = ["最后一句呢？", "最后一句是什么？", "那结尾一句呢？"]
FOLLOW_WHO = ["这首诗是谁写的？", "作者是谁？", "这是哪首诗？", "出自哪首诗？"]
NEXT_SHORT_A = ["是“{l}”。", "{l}。", "下一句是“{l}”。", "接下来是“{l}”。"]


def build_sft() -> list[dict]:
    rng = random.Random(SEED)
    b = Builder()

    # ---- Chinese poetry --------------------------------------------------------------------
    poems = [(t, a, split_lines(x)) for t, a, x in POEMS]
    raw = {t: x for t, _, x in POEMS}
    order = list(range(len(poems)))
    rng.shuffle(order)
    chain_ids = set(order[:26])            # multi-turn "next line" chains
    recite_ids = order[26:34]              # "recite it" + follow-up
    rest = order[26:]                      # single-turn "next line" for 22 of these, spot-checked poems first
    single_ids = set(sorted(rest, key=lambda i: poems[i][0] not in MUST_POEMS)[:22])
    for i, (title, author, lines) in enumerate(poems):
        attr = poem_attr(author, title)
        if i not in chain_ids and i not in single_ids:
            continue
        if i in chain_ids:
            n_user = rng.choice([2, 3, 4, 4])
            a0 = lines[0]
            q = rng.choice(NEXT_Q).format(a=a0)
            turns = [q, rng.choice(NEXT_A).format(a=a0, b=lines[1], attr=attr)]
            pos = 2
            follows = rng.sample(FOLLOW_NEXT, len(FOLLOW_NEXT))   # no follow-up phrasing twice in one chat
            for k in range(1, n_user):
                last = k == n_user - 1
                if last and rng.random() < 0.45:
                    turns += [rng.choice(FOLLOW_WHO), rng.choice(WHO_A).format(
                        attr=attr, dyn=DYN[author], author=author, title=title)]
                    break
                if pos >= len(lines):
                    break
                f = rng.choice(FOLLOW_LAST) if pos == len(lines) - 1 else follows.pop()
                ans = rng.choice(NEXT_SHORT_A).format(l=lines[pos])
                if lines[pos] + "？" in raw[title]:      # keep a question mark (杂诗: 寒梅著花未？)
                    ans = f"是“{lines[pos]}？”"
                turns += [f, ans]
                pos += 1
            if short_title(title) in FEELING and len(turns) < 8 and rng.random() < 0.5:
                turns += [rng.choice(["这首诗表达了什么？", "这首诗写的是什么？", "它表达了什么感情？"]),
                          f"《{short_title(title)}》" + FEELING[short_title(title)]]
            b.add_first("zh", "poetry-multi", [turns[0]] + [t.format(a=a0) for t in NEXT_Q], *turns[1:])
        else:
            q_opts = rng.sample(NEXT_Q, len(NEXT_Q))
            a = rng.choice(NEXT_A).format(a=lines[0], b=lines[1], attr=attr)
            b.add_first("zh", "poetry", [q.format(a=lines[0]) for q in q_opts], a)
        if len(lines) >= 8 and i not in chain_ids and rng.random() < 0.6:   # a later couplet too
            c = rng.randrange(1, len(lines) // 2)
            la, lb = lines[2 * c], lines[2 * c + 1]
            if rng.random() < 0.5:
                q_opts = [q.format(a=la) for q in rng.sample(NEXT_Q, len(NEXT_Q))]
                b.add_first("zh", "poetry", q_opts, rng.choice(NEXT_A).format(a=la, b=lb, attr=attr))
            else:
                q_opts = [q.format(a=la, b=lb) for q in rng.sample(WHO_Q, len(WHO_Q))]
                b.add_first("zh", "poetry", q_opts, rng.choice(WHO_A).format(
                    attr=attr, dyn=DYN[author], author=author, title=short_title(title)))

    for i in recite_ids:
        title, author, lines = poems[i]
        st = short_title(title)
        full = raw[title]
        q = rng.choice(["你会背《{t}》吗？", "背一下《{t}》。", "请默写《{t}》全诗。", "《{t}》全文是什么？"]).format(t=st)
        turns = [q, full]
        follow = rng.choice(["作者是谁？", "这是谁写的？", "哪个朝代的？"])
        turns += [follow, f"这首诗是{DYN[author]}{author}写的。" if follow != "哪个朝代的？" else f"是{DYN[author]}的诗，作者是{author}。"]
        if st in FEELING:
            turns += [rng.choice(["讲了什么？", "是什么意思？", "简单解释一下。"]), FEELING[st]]
        b.add("zh", "poetry-multi", *turns)

    for a, nb, author, title in keep(rng, EXTRA_COUPLETS, 14):
        attr = poem_attr(author, title)
        if rng.random() < 0.7:
            q_opts = [q.format(a=a) for q in rng.sample(NEXT_Q, len(NEXT_Q))]
            b.add_first("zh", "poetry", q_opts, rng.choice(NEXT_A).format(a=a, b=nb, attr=attr))
        else:
            q_opts = [q.format(a=a, b=nb) for q in rng.sample(WHO_Q, len(WHO_Q))]
            b.add_first("zh", "poetry", q_opts, rng.choice(WHO_A).format(
                attr=attr, dyn=DYN[author], author=author, title=short_title(title)))
    for a, nb, title in SHIJING[:2]:
        q_opts = [q.format(a=a) for q in rng.sample(NEXT_Q, len(NEXT_Q))]
        b.add_first("zh", "poetry", q_opts, f"下一句是“{nb}”，出自《诗经·{title}》。")

    for q, a in keep(rng, POETRY_QA_ZH, 14):
        b.add("zh", "poetry", q, a)

    # theme chains: "give me a line about X" -> "another one" -> "who wrote them?"
    themes = {
        "月亮": [("举头望明月，低头思故乡", "李白", "静夜思"), ("海上生明月，天涯共此时", "张九龄", "望月怀远"),
               ("但愿人长久，千里共婵娟", "苏轼", "水调歌头·明月几时有"), ("明月松间照，清泉石上流", "王维", "山居秋暝"),
               ("小时不识月，呼作白玉盘", "李白", "古朗月行")],
        "春天": [("春眠不觉晓，处处闻啼鸟", "孟浩然", "春晓"), ("好雨知时节，当春乃发生", "杜甫", "春夜喜雨"),
               ("不知细叶谁裁出，二月春风似剪刀", "贺知章", "咏柳"), ("春色满园关不住，一枝红杏出墙来", "叶绍翁", "游园不值"),
               ("竹外桃花三两枝，春江水暖鸭先知", "苏轼", "惠崇春江晚景")],
        "思乡": [("独在异乡为异客，每逢佳节倍思亲", "王维", "九月九日忆山东兄弟"), ("少小离家老大回，乡音无改鬓毛衰", "贺知章", "回乡偶书"),
               ("春风又绿江南岸，明月何时照我还", "王安石", "泊船瓜洲"), ("君自故乡来，应知故乡事", "王维", "杂诗")],
        "友情": [("海内存知己，天涯若比邻", "王勃", "送杜少府之任蜀州"), ("桃花潭水深千尺，不及汪伦送我情", "李白", "赠汪伦"),
               ("劝君更尽一杯酒，西出阳关无故人", "王维", "送元二使安西"), ("孤帆远影碧空尽，唯见长江天际流", "李白", "黄鹤楼送孟浩然之广陵")],
        "山水": [("两岸青山相对出，孤帆一片日边来", "李白", "望天门山"), ("飞流直下三千尺，疑是银河落九天", "李白", "望庐山瀑布"),
               ("大漠孤烟直，长河落日圆", "王维", "使至塞上"), ("横看成岭侧成峰，远近高低各不同", "苏轼", "题西林壁"),
               ("水光潋滟晴方好，山色空蒙雨亦奇", "苏轼", "饮湖上初晴后雨")],
        "秋天": [("停车坐爱枫林晚，霜叶红于二月花", "杜牧", "山行"), ("空山新雨后，天气晚来秋", "王维", "山居秋暝"),
               ("无边落木萧萧下，不尽长江滚滚来", "杜甫", "登高"), ("枯藤老树昏鸦，小桥流水人家", "马致远", "天净沙·秋思")],
        "励志": [("长风破浪会有时，直挂云帆济沧海", "李白", "行路难"), ("会当凌绝顶，一览众山小", "杜甫", "望岳"),
               ("老骥伏枥，志在千里", "曹操", "龟虽寿"), ("天生我材必有用，千金散尽还复来", "李白", "将进酒")],
    }
    start_q = ["给我一句关于{t}的诗。", "来一句{t}题材的古诗。"]
    again_q = ["再说一句。", "再来一句。", "还有吗？", "换一句。", "再给我一句吧。"]
    for t, items in themes.items():
        for s in range(2):
            x, y = items[s * 2 % len(items)], items[(s * 2 + 1) % len(items)]
            turns = [start_q[s].format(t=t), f"“{x[0]}。”——{x[1]}《{x[2]}》",
                     rng.choice(again_q), f"“{y[0]}。”——{y[1]}《{y[2]}》"]
            if rng.random() < 0.5:
                turns += [rng.choice(["这两句分别是谁写的？", "刚才两句的作者是谁？"]),
                          f"两句都是{DYN[x[1]]}{x[1]}写的，分别出自《{x[2]}》和《{y[2]}》。" if x[1] == y[1] else
                          f"第一句是{DYN[x[1]]}{x[1]}写的，第二句是{DYN[y[1]]}{y[1]}写的。"]
            b.add("zh", "poetry-multi", *turns)

    # poem -> translate that
    pt = list(POEM_EN.items())
    for k, (zh, en) in enumerate(pt):
        q = ["“{z}”用英文怎么翻译？", "把“{z}”翻译成英文。"][k % 2].format(z=zh.rstrip("。"))
        if k % 3 != 2:   # multi-turn: ask meaning, then translation
            b.add("zh", "poetry-multi", f"请解释一下“{zh.rstrip('。')}”。", POEM_MEANING[zh],
                  rng.choice(["能翻译成英文吗？", "翻译成英文呢？", "用英文怎么说？"]), en)
        else:
            b.add("zh", "translate", q, f"可以译为：{en}")

    # ---- Analects --------------------------------------------------------------------------
    for k, (a, nb) in enumerate(keep(rng, [x for j, x in enumerate(LUNYU) if j not in (0, 3, 7, 20)], 9)):
        q_opts = [q.format(a=a) for q in rng.sample(NEXT_Q, len(NEXT_Q))]
        b.add_first("zh", "lunyu", q_opts, rng.choice([
            "下一句是“{b}”，出自《论语》。", "“{a}，{b}。”这是《论语》里的话。", "{b}。这句出自《论语》。"]).format(a=a, b=nb))
    for q, a in keep(rng, LUNYU_QA_ZH, 8):
        b.add("zh", "lunyu", q, a)
    b.add("zh", "lunyu-multi", "学而时习之的下一句是什么？", "下一句是“不亦说乎”，出自《论语·学而》。",
          "“说”在这里怎么读？", "读yuè，同“悦”，是高兴的意思。", "那后面两句呢？", "“有朋自远方来，不亦乐乎？人不知而不愠，不亦君子乎？”")
    b.add("zh", "lunyu-multi", "“温故而知新”下一句是？", "下一句是“可以为师矣”，出自《论语·为政》。",
          "这句话是谁说的？", "是孔子说的。《论语》记录的主要是孔子和他弟子的言行。")
    b.add("zh", "lunyu-multi", "知之为知之，下一句呢？", "下一句是“不知为不知，是知也”。",
          "这句话想说明什么？", "对待知识要诚实，知道就说知道，不知道就承认不知道，这才是真正的聪明。")
    b.add("zh", "lunyu-multi", "孔子说过“三十而立”，四十呢？", "“四十而不惑”。",
          "五十呢？", "“五十而知天命”。", "六十和七十呢？", "“六十而耳顺，七十而从心所欲，不逾矩。”")

    # ---- Three Kingdoms -------------------------------------------------------------------
    for q, a in keep(rng, SANGUO_ZH, 28, must=MUST_QA):
        b.add("zh", "sanguo", q, a)
    for turns in SANGUO_MULTI_ZH:
        b.add("zh", "sanguo-multi", *turns)

    # ---- greetings / refusals / daily ------------------------------------------------------
    for q, a in keep(rng, GREET_ZH, 24, must=MUST_QA) + keep(rng, REFUSE_ZH, 13):
        b.add("zh", "chat", q, a)
    for q, a in keep(rng, DAILY_ZH, 18):
        b.add("zh", "daily", q, a)
    for q, a in keep(rng, SHAKES_BIBLE_ZH, 9):
        b.add("zh", "western", q, a)
    for turns in CHAT_MULTI_ZH:
        b.add("zh", "chat-multi", *turns)

    # ---- translation asked in Chinese ------------------------------------------------------
    tq_zh_en = ["“{z}”用英文怎么说？", "把“{z}”翻译成英文。", "“{z}”的英文是什么？", "{z}，英语怎么讲？"]
    ta_zh_en = ["可以说“{e}”", "英文是：{e}", "{e}", "英语可以说：{e}"]
    sel = TRANS[:]
    rng.shuffle(sel)
    sel.sort(key=lambda t: t[0] not in MUST_QA)
    for k, (z, e) in enumerate(sel[:12]):
        b.add("zh", "translate", tq_zh_en[k % 4].format(z=z), ta_zh_en[rng.randrange(4)].format(e=e))
    rest = sel[12:]
    for k in range(0, 12, 2):   # multi-turn: "and what about ...?"
        (z1, e1), (z2, e2) = rest[k], rest[k + 1]
        b.add("zh", "translate-multi", f"“{z1}”用英文怎么说？", f"“{e1}”",
              rng.choice(["那“{z}”呢？", "“{z}”又怎么说？"]).format(z=z2), f"“{e2}”")
    for k, (e, z) in enumerate(EN_TO_ZH[:5]):
        q = ["“{e}”是什么意思？", "把“{e}”翻译成中文。", "“{e}”翻译成中文是什么？"][k % 3].format(e=e)
        b.add("zh", "translate", q, ["意思是“{z}”", "{z}", "可以翻译成：{z}"][k % 3].format(z=z))
    for k, (en, zh) in enumerate(list(SHAKES_ZH.items())[:6]):
        if k % 2 == 0:
            b.add("zh", "translate", f"把莎士比亚的“{en}”翻译成中文。", zh)
        else:
            play = next(p for _, full, p, _ in SHAKES if full == en)
            b.add("zh", "translate-multi", f"“{en}”是什么意思？", f"意思是“{zh.rstrip('。')}”。",
                  "出自哪部作品？", f"出自莎士比亚的《{PLAY_ZH[play]}》。")

    # ---- reviews ---------------------------------------------------------------------------
    rq = ["这条评价是好评还是差评：“{r}”", "判断一下这条评论的情感：{r}", "“{r}”这是正面评价还是负面评价？", "帮我看看这条评价是好是坏：{r}"]
    for k, (r, pos, why) in enumerate(keep(rng, REVIEWS_ZH, 10)):
        label = "好评" if pos else ("差评" if pos is False else "中性评价")
        b.add("zh", "review", rq[k % 4].format(r=r), f"这是{label}，{why}。")
    b.add("zh", "review-multi", "帮我判断这条评价：“快递很快，东西也好用。”", "这是好评，评价者对物流和商品都满意。",
          "那这条呢：“客服态度很差，问题一直没解决。”", "这是差评，评价者对客服不满意。",
          "把第一条翻译成英文。", "Fast delivery, and the product works well.")
    b.add("zh", "review-multi", "帮我写一句酒店的好评。", "房间宽敞明亮，床品干净，前台服务热情，住得很舒服。",
          "再写一句差评。", "房间有霉味，空调噪音很大，整晚都没睡好。")
    b.add("zh", "review-multi", "这条评论是好评吗：“屏幕很清晰，就是电池不太耐用。”", "这条评价有褒有贬：夸了屏幕，批评了电池，整体算中性。",
          "那卖家应该改进什么？", "应该改进电池续航，这是用户最不满意的地方。")
    b.add("zh", "review-multi", "写一句夸奖书店的话。", "这家书店安静整洁，书很多，店员也很热情。",
          "再短一点。", "书多、安静、服务好。")

    # ---- arithmetic ------------------------------------------------------------------------
    arith_zh(b, rng)

    # ---- English ---------------------------------------------------------------------------
    for q, a in keep(rng, GREET_EN, 18) + keep(rng, REFUSE_EN, 12):
        b.add("en", "chat", q, a)
    for q, a in keep(rng, SHAKES_QA_EN, 20):
        b.add("en", "shakespeare", q, a)
    for q, a in keep(rng, BIBLE_EN, 18, must=MUST_QA):
        b.add("en", "bible", q, a)
    for q, a in keep(rng, MILTON_EN, 11, must=MUST_QA):
        b.add("en", "milton", q, a)
    for q, a in keep(rng, CHINA_EN, 12):
        b.add("en", "china", q, a)
    for q, a in keep(rng, DAILY_EN, 16):
        b.add("en", "daily", q, a)
    for turns in MULTI_EN:
        b.add("en", "chat-multi", *turns)

    sq_next = ["Finish this line: \"{c}...\"", "What comes after \"{c}\"?", "Complete the quote: \"{c}...\"",
               "How does the line \"{c}...\" go on?"]
    sq_src = ["Which play is \"{f}\" from?", "Where does \"{f}\" come from?", "Who says \"{f}\"?"]
    single_quotes = keep(rng, [x for k, x in enumerate(SHAKES) if not (k % 3 == 2 and x[2] in PLOTS)], 22, must=MUST_QA)
    for k, (cue, full, work, who) in enumerate(SHAKES):
        where = f"Shakespeare's {work}"
        spk = f", spoken by {who}" if who else ""
        if (cue, full, work, who) not in single_quotes and not (k % 3 == 2 and work in PLOTS):
            continue
        if k % 3 == 2 and work in PLOTS:     # multi-turn: quote -> who -> what is the play about
            turns = [sq_next[k % 4].format(c=cue), f"\"{full}\" It comes from {where}.",
                     rng.choice(["Who says it?", "Which character says that?"]),
                     f"{who[0].upper() + who[1:]} says it." if who else "It is not spoken by a character.",
                     rng.choice(["What is the play about?", "And what happens in that play?"]), PLOTS[work]]
            b.add("en", "shakespeare-multi", *turns)
        elif k % 2 == 0:
            b.add("en", "shakespeare", sq_next[(k // 2) % 4].format(c=cue), f"\"{full}\" It is from {where}{spk}.")
        else:
            q = sq_src[(k // 2) % 3].format(f=full)
            if work.startswith("Sonnet") and q.startswith("Which play"):
                q = sq_src[1].format(f=full)
            if q.startswith("Who") and who:
                a = f"{who[0].upper() + who[1:]} says it in {where}."
            else:
                a = f"It is from {where}{spk}."
            b.add("en", "shakespeare", q, a)
    for en, zh in list(SHAKES_ZH.items())[6:]:
        b.add("en", "shakespeare-multi", f"Tell me what \"{en}\" means.", SHAKES_MEANING[en],
              rng.choice(["How would you say it in Chinese?", "Translate that into Chinese."]), zh)

    # English speakers asking about Chinese
    items = list(PINYIN.items())
    for k, (e, (z, py)) in enumerate(items[:8]):
        q = ["How do you say \"{e}\" in Chinese?", "What is \"{e}\" in Chinese?", "Translate \"{e}\" into Chinese."][k % 3]
        b.add("en", "translate", q.format(e=e), f"{z} ({py}).")
    rest = items[8:16]
    for k in range(0, len(rest) - 1, 2):
        (e1, (z1, p1)), (e2, (z2, p2)) = rest[k], rest[k + 1]
        b.add("en", "translate-multi", f"What's the Chinese for \"{e1}\"?", f"{z1} ({p1}).",
              rng.choice(["And \"{e}\"?", "What about \"{e}\"?"]).format(e=e2), f"{z2} ({p2}).")
    zsel = [t for t in TRANS if len(t[0]) <= 6 and " " in t[1]][:14]
    for k, (z, e) in enumerate(zsel[:8]):
        q = ["Translate into English: {z}", "What does {z} mean in English?", "What is the English for {z}?"][k % 3]
        b.add("en", "translate", q.format(z=z), [f"It means \"{e}\"", f"\"{e}\"", f"In English: {e}"][k % 3])
    for k, (e, z) in enumerate(EN_TO_ZH[10:16]):
        b.add("en", "translate", ["Translate \"{e}\" into Chinese.", "How do I say \"{e}\" in Chinese?"][k % 2].format(e=e),
              f"{z}")
    tang = [("举头望明月，低头思故乡。", "Li Bai", "Quiet Night Thought", "静夜思"),
            ("白日依山尽，黄河入海流。", "Wang Zhihuan", "On the Stork Tower", "登鹳雀楼"),
            ("春眠不觉晓，处处闻啼鸟。", "Meng Haoran", "Spring Dawn", "春晓"),
            ("海内存知己，天涯若比邻。", "Wang Bo", "Farewell to Vice-Prefect Du", "送杜少府之任蜀州"),
            ("谁知盘中餐，粒粒皆辛苦。", "Li Shen", "Pity the Farmers", "悯农"),
            ("野火烧不尽，春风吹又生。", "Bai Juyi", "Grass on the Ancient Plain", "赋得古原草送别")]
    asks = ["Give me a famous line from a Tang poem.", "Can you quote a line of Chinese poetry?",
            "Share a classical Chinese poem line with me.", "Tell me a well-known line by a Tang poet.",
            "Quote me some Chinese poetry, please.", "What's a famous Chinese poem line?"]
    for k, (line, poet, title_en, title_zh) in enumerate(tang):
        turns = [asks[k], f"{line} From {poet}'s \"{title_en}\" ({title_zh}).",
                 rng.choice(["Translate that.", "What does it mean in English?", "Can you translate it?"]), POEM_EN[line]]
        if k % 2 == 0:
            turns += [rng.choice(["Who wrote it again?", "And the poet was?"]), f"{poet}, a poet of the Tang dynasty."]
        b.add("en", "china-multi", *turns)

    # reviews
    rq_en = ["Is this review positive or negative? \"{r}\"", "What's the sentiment of this review: \"{r}\"",
             "Classify this review: \"{r}\"", "Positive or negative: \"{r}\""]
    for k, (r, pos, why) in enumerate(keep(rng, REVIEWS_EN, 8)):
        label = "Positive" if pos else ("Negative" if pos is False else "Mixed")
        b.add("en", "review", rq_en[k % 4].format(r=r), f"{label}: {why}.")

    arith_en(b, rng)

    # ---- system messages (~10%) ------------------------------------------------------------
    rows = b.rows
    n_sys = round(len(rows) * 0.10)
    picked = rng.sample(range(len(rows)), n_sys)
    out = []
    for i, (lang, kind, msgs) in enumerate(rows):
        if i in picked:
            pool = SYS_ZH if lang == "zh" else SYS_EN
            if kind.startswith(("poetry", "sanguo", "lunyu")):
                pool = pool + SYS_ZH_TOPIC
            if kind.startswith(("shakespeare", "bible", "milton")):
                pool = pool + SYS_EN_TOPIC
            msgs = [{"role": "system", "content": rng.choice(pool)}] + msgs
            assert lang_of(m["content"] for m in msgs) == lang
        out.append({"lang": lang, "kind": kind, "messages": msgs})
    rng.shuffle(out)
    return out


SYS_ZH = ["你是百川助手，一个小型中英文演示模型。回答要简短。", "你是百川助手。请用简洁友好的语气回答。",
          "你是一个乐于助人的助手，回答不超过三句话。", "请简短回答用户的问题。"]
SYS_ZH_TOPIC = ["你是百川助手，擅长古诗词和历史故事。", "你是一位耐心的语文老师。"]
SYS_EN = ["You are Baichuan assistant, a small bilingual demo model. Keep answers short.",
          "You are a helpful assistant. Answer in one to three sentences.",
          "You are Baichuan assistant. Be polite and concise.", "Answer the user's question briefly."]
SYS_EN_TOPIC = ["You are a friendly literature tutor.", "You are Baichuan assistant, and you love English literature."]

POEM_MEANING = {
    "举头望明月，低头思故乡。": "抬头望着天上的明月，低下头思念起远方的家乡。",
    "床前明月光，疑是地上霜。": "明亮的月光洒在床前，好像地上铺了一层白霜。",
    "白日依山尽，黄河入海流。": "太阳靠着山峦慢慢落下，黄河向着大海奔流而去。",
    "欲穷千里目，更上一层楼。": "想要看到千里之外的风景，就要再登上一层楼。",
    "春眠不觉晓，处处闻啼鸟。": "春天睡得香甜，不知不觉天就亮了，到处都能听到鸟儿的叫声。",
    "海内存知己，天涯若比邻。": "四海之内有知心朋友，即使远在天边也像近邻一样。",
    "谁知盘中餐，粒粒皆辛苦。": "有谁知道盘里的饭食，每一粒都是农民辛苦劳动得来的。",
    "野火烧不尽，春风吹又生。": "野火烧不尽草根，春风一吹，野草又长了出来。",
    "独在异乡为异客，每逢佳节倍思亲。": "独自在外乡做客，每到节日就更加思念亲人。",
    "但愿人长久，千里共婵娟。": "只希望亲人平安长久，虽然相隔千里，也能共赏这一轮明月。",
}

SHAKES_MEANING = {
    "Love all, trust a few, do wrong to none.": "Be kind to everyone, trust only a few people, and harm no one. The Countess says it in All's Well That Ends Well.",
    "Some are born great, some achieve greatness, and some have greatness thrust upon 'em.": "Greatness comes in different ways: by birth, by effort, or by chance. It is from a letter read by Malvolio in Twelfth Night.",
    "Uneasy lies the head that wears a crown.": "People with power and responsibility carry heavy worries. King Henry says it in Henry IV, Part 2.",
    "This above all: to thine own self be true.": "Above everything, be honest with yourself and live by your own values. It is Polonius's advice to his son Laertes in Hamlet.",
    "Neither a borrower nor a lender be.": "Don't borrow or lend money, because it can cost you both the money and the friend. It is Polonius's advice in Hamlet.",
}

SANGUO_MULTI_ZH = [
    ("桃园结义的三兄弟都是谁？", "刘备、关羽、张飞。", "谁是老大？", "刘备是大哥，关羽是二弟，张飞是三弟。",
     "关羽用什么兵器？", "青龙偃月刀。"),
    ("诸葛亮是谁请出山的？", "是刘备。刘备三顾茅庐，才请诸葛亮出山。", "诸葛亮出山前住在哪里？", "住在隆中，他自号卧龙。"),
    ("草船借箭借了多少支箭？", "在《三国演义》中，诸葛亮借到了十万多支箭。", "是向谁借的？", "是向曹操“借”的，曹军朝草船放箭，箭都扎在了草把上。",
     "为什么要借箭？", "周瑜要求诸葛亮十天造十万支箭，想为难他，诸葛亮却说三天就够了。"),
    ("赤壁之战谁赢了？", "孙权和刘备的联军赢了，曹操大败。", "他们用了什么办法？", "主要用火攻。黄盖诈降，带着装满柴草的船冲向曹军战船放火。",
     "曹操后来往哪逃了？", "曹操从华容道逃走，关羽念旧情放了他。"),
    ("曹操的儿子里谁当了皇帝？", "曹丕。他在公元220年接受汉献帝禅让，建立了魏国。", "那曹植呢？", "曹植是曹丕的弟弟，很有文才，相传写过《七步诗》。"),
    ("赵云是哪国的将军？", "赵云是蜀汉的将军，字子龙。", "他最有名的一战是什么？", "长坂坡之战，他单骑救出了刘备的儿子阿斗。"),
    ("关羽的马叫什么？", "赤兔马。", "这匹马原来是谁的？", "原来是吕布的，吕布死后曹操把它送给了关羽。"),
    ("诸葛亮为什么要斩马谡？", "马谡违背部署，丢了街亭，导致北伐失败，诸葛亮按军法处斩了他。", "他心里舍得吗？", "不舍得，所以叫“挥泪斩马谡”。"),
    ("刘备的儿子叫什么？", "刘禅，小名阿斗。", "他后来怎么样了？", "刘禅继位为蜀汉后主，蜀汉灭亡后投降了魏，被安置在洛阳。",
     "“乐不思蜀”是怎么来的？", "司马昭问他是否思念蜀地，他说“此间乐，不思蜀”。"),
    ("三国里谁最聪明？", "一般认为诸葛亮最有智谋，他在书中几乎是智慧的化身。", "那他有对手吗？", "司马懿是他的主要对手，两人多次交锋。"),
    ("吕布是怎么死的？", "吕布在下邳被曹操围困，部下把他绑了献给曹操，最后被处死。", "他生前最有名的是什么？", "武艺超群，有“人中吕布，马中赤兔”的说法。"),
    ("周瑜字什么？", "周瑜字公瑾。", "他和诸葛亮关系怎么样？", "在《三国演义》里两人既合作又较劲，周瑜多次想害诸葛亮，都没有成功。"),
]

CHAT_MULTI_ZH = [
    ("嗨，你好啊", "你好！我是百川助手，很高兴和你聊天。", "你能做什么？", "我能接诗句、讲三国故事、翻译短句和做简单的计算。",
     "那给我讲一句唐诗吧。", "“白日依山尽，黄河入海流。”出自王之涣的《登鹳雀楼》。"),
    ("明天上海会下雨吗？", "抱歉，我查不到天气预报，没法回答。", "那你能做什么？", "我可以陪你聊天、接诗句、讲故事，也能做简单的翻译和计算。"),
    ("我想学古诗，但不知道从哪开始。", "可以先读《唐诗三百首》，从短小的五言绝句开始背。", "推荐一首最简单的？",
     "可以先背李白的《静夜思》，只有二十个字。", "那我背给你听：床前明月光，疑是地上霜。", "背得很好！后两句是“举头望明月，低头思故乡”。"),
    ("今天好冷。", "天冷要多穿点衣服，喝点热水。", "有没有写冬天的诗？", "有，比如柳宗元的《江雪》：“孤舟蓑笠翁，独钓寒江雪。”"),
    ("我今天心情不太好。", "抱歉听到这个。愿意说说发生了什么吗？", "工作上出了点错。", "谁都会犯错，改正就好。今晚早点休息，明天会好一些。"),
    ("推荐一本书吧。", "如果喜欢历史故事，可以读《三国演义》。", "它长吗？", "挺长的，一共一百二十回。可以每天读一两回，慢慢来。"),
    ("你叫什么？", "我叫百川助手。", "你是谁做的？", "我是百川项目里的演示模型，用一个小语料训练而成。", "你懂得多吗？", "懂得不多。我是小模型，答错的时候请多包涵。"),
    ("帮我想一个周末计划。", "上午去公园散步，下午读一本书，晚上和家人一起做饭。", "如果下雨呢？", "那就在家看电影、整理房间，或者读几首诗。"),
    ("我饿了。", "可以吃点东西垫垫，比如水果或面包。", "晚饭做什么好？", "简单一点的话，番茄炒蛋配米饭就不错。"),
    ("现在几点？", "抱歉，我无法知道当前时间，请看一下设备上的时钟。", "好吧，那你给我讲个笑话。",
     "老师问：“‘一览众山小’是什么意思？”学生说：“爬到山顶，发现其他山都没我高。”"),
    ("你会说英文吗？", "会一些。", "那用英文跟我打个招呼。", "Hello! Nice to meet you."),
    ("能帮我写一句生日祝福吗？", "祝你生日快乐，天天开心，万事如意！", "翻译成英文。", "Happy birthday! I wish you joy every day and success in everything."),
]

MULTI_EN = [
    ("Hi!", "Hi! I'm Baichuan assistant. What would you like to talk about?", "What do you know about?",
     "A little about Tang poetry, Shakespeare, the Bible, Milton and everyday topics.", "Okay, tell me a Shakespeare line.",
     "\"All the world's a stage, and all the men and women merely players.\" It is from As You Like It."),
    ("What's the weather in Paris tomorrow?", "Sorry, I can't look up weather forecasts.", "Then what can you help with?",
     "I can chat, continue famous lines, translate short phrases and do simple maths."),
    ("What is the first verse of Genesis?", "\"In the beginning God created the heaven and the earth.\"", "And the third verse?",
     "\"And God said, Let there be light: and there was light.\""),
    ("Finish this verse: \"The LORD is my shepherd; I shall not want.\"", "\"He maketh me to lie down in green pastures: he leadeth me beside the still waters.\"",
     "Which psalm is that?", "Psalm 23, verses 1 and 2."),
    ("Do you know Paradise Lost?", "Yes, it is an epic poem by John Milton.", "When was it published?", "It was first published in 1667, in ten books; the 1674 edition has twelve.",
     "Who is the most famous character?", "Satan is the most memorable character, especially in the first books."),
    ("Who wrote Lycidas?", "John Milton, in 1637.", "What is it about?", "It is an elegy mourning his friend Edward King, who drowned at sea."),
    ("Who is Hamlet?", "Hamlet is the Prince of Denmark in Shakespeare's tragedy of the same name.", "Who killed his father?",
     "His uncle Claudius, who poured poison in the old king's ear.", "Does Hamlet get revenge?",
     "Yes, he finally kills Claudius, but he dies himself from a poisoned sword."),
    ("Recommend a Shakespeare comedy.", "Try A Midsummer Night's Dream. It's funny, magical and fairly short.",
     "Who is the funniest character?", "Many readers love Bottom, the weaver who is given a donkey's head by Puck."),
    ("I'm learning Chinese.", "That's great! What would you like to learn today?", "How do I say \"thank you\"?",
     "谢谢 (xièxie).", "And \"you're welcome\"?", "不客气 (bú kèqi)."),
    ("Can you help me with a review?", "Sure. What did you buy, and how was it?", "A kettle. It boils fast but it's noisy.",
     "\"Boils water quickly, but it's louder than I expected.\"", "Make it more positive.",
     "\"Boils water very quickly. It's a bit noisy, but overall I'm happy with it.\""),
    ("Morning! How's it going?", "Good morning! I'm fine, thanks. How are you today?", "A bit tired.", "Maybe a cup of tea and some fresh air will help. Take it easy today."),
    ("Who was Zhuge Liang?", "A brilliant strategist who served Liu Bei in the Three Kingdoms period.", "What is he famous for in the novel?",
     "Borrowing arrows with straw boats, the empty fort strategy and calling the east wind at Red Cliffs."),
    ("Tell me about Romance of the Three Kingdoms.", "It is a classic Chinese novel by Luo Guanzhong about the wars of Wei, Shu and Wu.",
     "How many chapters does it have?", "The standard version has 120 chapters.", "Who are the three sworn brothers?", "Liu Bei, Guan Yu and Zhang Fei."),
    ("Tell me a Bible story.", "David, a young shepherd, defeated the giant Goliath with a single stone from his sling.",
     "Where is that in the Bible?", "It is in 1 Samuel, chapter 17."),
    ("What is the shortest verse in the Bible?", "\"Jesus wept.\" John 11:35 in the King James Version.", "Why did he weep?",
     "He wept at the death of his friend Lazarus, whom he then raised from the dead."),
    ("Are you there?", "Yes, I'm here. How can I help?", "Can you look something up online for me?",
     "Sorry, I can't browse the internet. I can only answer from what I learned in training.", "Okay, then just chat with me.",
     "Happy to! How has your day been so far?"),
    ("I want to read more poetry.", "Wonderful! Do you prefer English or Chinese poetry?", "English.",
     "Start with Shakespeare's sonnets, then try Milton's shorter poems, such as his sonnet on his blindness."),
    ("Who says \"Et tu, Brute?\"", "Julius Caesar, as Brutus stabs him, in Shakespeare's Julius Caesar.", "What does it mean?",
     "It is Latin for \"And you, Brutus?\" Caesar is shocked that even his friend has betrayed him."),
    ("Give me a line from Macbeth.", "\"Fair is foul, and foul is fair.\" The witches chant it in the first scene.", "What does it mean?",
     "Things are not what they seem: good can look bad and bad can look good. It sets the play's mood of confusion."),
    ("Who is Juliet?", "Juliet Capulet is the young heroine of Romeo and Juliet.", "How old is she?", "She is not yet fourteen in the play.",
     "Who do her parents want her to marry?", "Count Paris."),
    ("Can you help me plan my day?", "Sure. What do you need to get done?", "Study for two hours and buy groceries.",
     "Study in the morning while you're fresh, take a break at noon, then do the shopping in the afternoon.", "And the evening?",
     "Keep it light: cook dinner, read a little and go to bed early."),
    ("Tell me about the Book of Psalms.", "Psalms is a book of 150 songs and prayers in the Old Testament, many attributed to King David.",
     "Which one is the most famous?", "Psalm 23, which begins \"The LORD is my shepherd; I shall not want.\""),
    ("Who is Satan in Paradise Lost?", "He is the fallen archangel who rebels against God and is cast into Hell with his followers.",
     "What does he do after the fall?", "He travels to Eden and, in the form of a serpent, tempts Eve to eat the forbidden fruit."),
    ("Do you know the poem Quiet Night Thought?", "Yes, it is a short poem by Li Bai about moonlight and homesickness.", "How long is it?",
     "Just four lines of five characters each, twenty characters in all.", "Can you say it in Chinese?",
     "床前明月光，疑是地上霜。举头望明月，低头思故乡。"),
    ("Which is longer, Hamlet or Macbeth?", "Hamlet is much longer. It is Shakespeare's longest play, while Macbeth is his shortest tragedy.",
     "So which should I read first?", "Macbeth, if you want a quick, gripping read; Hamlet when you have more time."),
    ("I bought new headphones.", "Nice! How do you like them?", "The sound is great but they hurt my ears.",
     "That's common with a tight band. Try adjusting it, or take short breaks.", "Can you turn that into a short review?",
     "\"Excellent sound quality, but they get uncomfortable after an hour of wear.\""),
    ("What is the Sermon on the Mount?", "It is a long teaching of Jesus in Matthew chapters 5 to 7, including the Beatitudes and the Lord's Prayer.",
     "What are the Beatitudes?", "Blessings such as \"Blessed are the meek: for they shall inherit the earth.\""),
    ("Who are the witches in Macbeth?", "Three mysterious \"weird sisters\" who prophesy that Macbeth will become king.",
     "Do their prophecies come true?", "Yes, but in ways Macbeth does not expect, and they lead him to ruin."),
    ("It's my friend's birthday tomorrow.", "How nice! Are you planning something?", "I want to write a card. Any ideas?",
     "\"Happy birthday! Thank you for always being there. I hope this year brings you joy and adventure.\"", "Make it shorter.",
     "\"Happy birthday! Wishing you a joyful year ahead.\""),
    ("Who is Liu Bei?", "Liu Bei is the founder of Shu Han and the eldest of the three sworn brothers in Romance of the Three Kingdoms.",
     "Who were his brothers?", "Guan Yu and Zhang Fei.", "Who was his chief strategist?",
     "Zhuge Liang, whom he visited three times before he agreed to serve."),
    ("What is the last book of the Bible?", "Revelation, called The Revelation of St. John the Divine in the KJV.", "What is it about?",
     "It describes visions of the end of the world and the final victory of God over evil."),
    ("Tell me about Shakespeare's sonnets.", "He wrote 154 sonnets, first published in 1609.", "Which is the most famous?",
     "Probably Sonnet 18, \"Shall I compare thee to a summer's day?\"", "How does it end?",
     "\"So long as men can breathe or eyes can see, / So long lives this, and this gives life to thee.\""),
    ("Is it going to snow tonight?", "Sorry, I can't check the weather.", "Okay. Any tips for a snowy day anyway?",
     "Dress in warm layers, wear shoes with a good grip, and allow extra time for travel."),
    ("Translate 早上好 for me.", "It means \"Good morning.\"", "How should I reply?",
     "You can simply say 早上好 back, or 你好, which means \"hello\"."),
]


def arith_zh(b: Builder, rng: random.Random) -> None:
    made = 0
    while made < 14:
        kind = made % 7
        a, c = rng.randint(2, 99), rng.randint(2, 99)
        if kind == 0:
            ok = b.add_try("zh", "math", f"{a}加{c}等于多少？", f"{a}加{c}等于{a + c}。")
        elif kind == 1:
            a, c = max(a, c), min(a, c)
            ok = b.add_try("zh", "math", f"{a}减{c}等于几？", f"{a}减{c}等于{a - c}。")
        elif kind == 2:
            a, c = rng.randint(2, 12), rng.randint(2, 12)
            ok = b.add_try("zh", "math", f"{a}乘以{c}是多少？", f"{a}乘以{c}等于{a * c}。")
        elif kind == 3:
            q, c = rng.randint(2, 12), rng.randint(2, 9)
            ok = b.add_try("zh", "math", f"{q * c}除以{c}等于多少？", f"{q * c}除以{c}等于{q}。")
        elif kind == 4:
            a, c = max(a, c) + 3, rng.randint(1, 3)
            ok = b.add_try("zh", "math", f"小明有{a}个苹果，吃了{c}个，还剩几个？", f"还剩{a}-{c}={a - c}个苹果。")
        elif kind == 5:
            p, n = rng.randint(2, 20), rng.randint(2, 9)
            ok = b.add_try("zh", "math", f"一支笔{p}元，买{n}支要多少钱？", f"{p}×{n}={p * n}，一共要{p * n}元。")
        else:
            ok = b.add_try("zh", "math", f"一个班有{a % 30 + 10}个男生和{c % 30 + 10}个女生，一共多少人？",
                       f"{a % 30 + 10}+{c % 30 + 10}={a % 30 + 10 + c % 30 + 10}，一共{a % 30 + 10 + c % 30 + 10}人。")
        made += ok
    made = 0
    while made < 10:
        a, c, k, m = rng.randint(5, 60), rng.randint(5, 60), rng.randint(2, 5), rng.randint(1, 20)
        s, d = a + c, (a + c) * k
        turns = [f"{a}加{c}等于多少？", f"{a}加{c}等于{s}。",
                 rng.choice(["再乘以{k}呢？", "结果再乘{k}是多少？", "那乘以{k}呢？"]).format(k=k), f"{s}乘以{k}等于{d}。"]
        if made % 2 == 0:
            turns += [rng.choice(["再减去{m}呢？", "然后减{m}呢？"]).format(m=m), f"{d}减去{m}等于{d - m}。"]
        if made % 4 == 0:
            x = rng.randint(1, 50)
            turns += [rng.choice(["最后再加{x}呢？", "再加上{x}等于多少？"]).format(x=x), f"{d - m}加{x}等于{d - m + x}。"]
        made += b.add_try("zh", "math-multi", *turns)


def arith_en(b: Builder, rng: random.Random) -> None:
    made = 0
    while made < 14:
        kind = made % 6
        a, c = rng.randint(2, 99), rng.randint(2, 99)
        if kind == 0:
            ok = b.add_try("en", "math", f"What is {a} plus {c}?", f"{a} plus {c} is {a + c}.")
        elif kind == 1:
            a, c = max(a, c), min(a, c)
            ok = b.add_try("en", "math", f"What's {a} minus {c}?", f"{a} minus {c} is {a - c}.")
        elif kind == 2:
            a, c = rng.randint(2, 12), rng.randint(2, 12)
            ok = b.add_try("en", "math", f"What is {a} times {c}?", f"{a} times {c} is {a * c}.")
        elif kind == 3:
            q, c = rng.randint(2, 12), rng.randint(2, 9)
            ok = b.add_try("en", "math", f"What is {q * c} divided by {c}?", f"{q * c} divided by {c} is {q}.")
        elif kind == 4:
            a, c = max(a, c), min(a, c)
            ok = b.add_try("en", "math", f"I had {a} dollars and spent {c}. How much is left?", f"You have {a - c} dollars left.")
        else:
            a, c = rng.randint(6, 12), rng.randint(2, 9)
            ok = b.add_try("en", "math", f"A box holds {a} eggs. How many eggs are in {c} boxes?",
                       f"{a} × {c} = {a * c}, so there are {a * c} eggs.")
        made += ok
    made = 0
    while made < 10:
        a, c, k, m = rng.randint(5, 60), rng.randint(5, 60), rng.randint(2, 5), rng.randint(1, 20)
        s, d = a + c, (a + c) * k
        turns = [f"What is {a} plus {c}?", f"{a} plus {c} is {s}.",
                 rng.choice(["Now multiply that by {k}.", "And times {k}?", "What if I multiply it by {k}?"]).format(k=k),
                 f"{s} times {k} is {d}."]
        if made % 2 == 1:
            turns += [rng.choice(["Then subtract {m}.", "And minus {m}?"]).format(m=m), f"{d} minus {m} is {d - m}."]
        if made % 4 == 1:
            x = rng.randint(1, 50)
            turns += [rng.choice(["Finally, add {x}.", "Now plus {x}?"]).format(x=x), f"{d - m} plus {x} is {d - m + x}."]
        made += b.add_try("en", "math-multi", *turns)


# =============================================================================================
# DPO pairs
# =============================================================================================

RUDE_ZH = ["这么简单都不会？自己去查。", "问这个干什么，懒得回答。", "不知道，别烦我。", "这种问题也好意思问？"]
RUDE_EN = ["Look it up yourself.", "That's a silly question. Figure it out.", "I don't care, stop asking.", "Why would I tell you that?"]


# titles that several poets used: never asked as "who wrote 《title》?"
AMBIGUOUS_TITLES = {"绝句", "凉州词", "悯农", "从军行", "清明", "风", "杂诗", "赤壁", "出塞", "池上", "相思"}


def ramble_zh(ans: str) -> str:
    core = ans.rstrip("。")
    return f"嗯，这个问题嘛，让我想想，其实这个问题很多人都问过，{core}，{core}，对，就是{core}，大概吧，我也不太确定。"


def ramble_en(ans: str) -> str:
    core = ans.rstrip(".")
    return f"Well, so, let me think, this is a question many people ask. I think the answer is this: {core}. Yes: {core}. Probably. Maybe. I'm not sure."


def build_dpo() -> list[dict]:
    rng = random.Random(SEED + 1)
    out, prompts = [], set()

    def add(prompt, chosen, rejected, lang, kind):
        assert chosen != rejected and prompt not in prompts, prompt
        assert lang_of([prompt]) == lang, (prompt, lang)
        for t in (prompt, chosen, rejected):
            assert isinstance(t, str) and t.strip() == t and t, (prompt, t)
        check_reply(chosen)
        assert len(CJK.findall(rejected)) <= 160 and len(WORD.findall(rejected)) <= 120, rejected
        prompts.add(prompt)
        out.append({"prompt": prompt, "chosen": chosen, "rejected": rejected, "lang": lang, "kind": kind})

    # poem next line
    couplets = []
    for title, author, text in POEMS:
        ls = split_lines(text)
        couplets += [(ls[j], ls[j + 1], author, short_title(title)) for j in range(0, len(ls), 2)]
    couplets += [(a, nb, au, short_title(t)) for a, nb, au, t in EXTRA_COUPLETS]
    rng.shuffle(couplets)
    for k, (a, nb, author, title) in enumerate(couplets[:40]):
        chosen = f"下一句是“{nb}”，出自{DYN[author]}{author}的《{title}》。"
        mode = k % 5
        if mode == 0 or mode == 3:
            wrong = couplets[(k + 17) % len(couplets)]
            rejected = f"下一句是“{wrong[1]}”，出自{wrong[2]}的《{wrong[3]}》。"
        elif mode == 1:
            rejected = rng.choice(RUDE_ZH)
        elif mode == 2:
            rejected = f"The next line is \"{nb}\"."
        else:
            rejected = ramble_zh(f"下一句是“{nb}”")
        q = ["请接下一句：{a}", "“{a}”的下句是什么？", "{a}，下一句？", "对下句：{a}"][k % 4].format(a=a)
        add(q, chosen, rejected, "zh", "poetry")
    # poem author
    titled = {}
    for title, author, _ in POEMS:
        st = short_title(title)
        if st not in AMBIGUOUS_TITLES:
            titled[st] = author
    names = sorted(titled)
    rng.shuffle(names)
    authors = sorted(set(titled.values()))
    for k, st in enumerate(names[:20]):
        author = titled[st]
        wrong = authors[(authors.index(author) + 3 + k) % len(authors)]
        if wrong == author:
            wrong = authors[(authors.index(author) + 1) % len(authors)]
        add(f"《{st}》的作者是谁？", f"《{st}》的作者是{DYN[author]}诗人{author}。",
            f"《{st}》的作者是{wrong}。" if k % 4 else f"The author of this poem is {wrong}.", "zh", "poetry")
    # Analects
    for k, (a, nb) in enumerate(LUNYU[:12]):
        wrong = LUNYU[(k + 5) % len(LUNYU)][1]
        add(f"《论语》中“{a}”的下一句是什么？", f"下一句是“{nb}”。",
            f"下一句是“{wrong}”。" if k % 3 else rng.choice(RUDE_ZH), "zh", "lunyu")
    # Three Kingdoms: (q, chosen, wrong fact)
    for k, (q, c, w) in enumerate(SANGUO_DPO):
        add(q, c, w, "zh", "sanguo")
    # arithmetic
    for k in range(16):
        a, c = rng.randint(10, 99), rng.randint(10, 99)
        if k % 2 == 0:
            q, ans = f"请计算{a}+{c}。", a + c
            chosen, wrong = f"{a}+{c}={ans}。", f"{a}+{c}={ans + rng.choice([-10, -1, 1, 10])}。"
            add(q, chosen, wrong if k % 4 else ramble_zh(chosen), "zh", "math")
        else:
            a, c = rng.randint(3, 15), rng.randint(3, 15)
            q = f"What is {a} multiplied by {c}?"
            chosen, wrong = f"{a} multiplied by {c} is {a * c}.", f"{a} multiplied by {c} is {a * c + rng.choice([-a, a, 2, -2])}."
            add(q, chosen, wrong if k % 4 != 1 else f"{a}乘以{c}等于{a * c}。", "en", "math")
    # translations
    tr = [t for t in TRANS if " " in t[1]]
    for k, (z, e) in enumerate(tr[:14]):
        wrong = tr[(k + 7) % len(tr)][1]
        if k % 2 == 0 or len(z) > 5:
            add(f"请把“{z}”译成英文。", f"英文是“{e}”", f"英文是“{wrong}”" if k % 4 == 0 else "我不想翻译，你自己查词典吧。", "zh", "translate")
        else:
            add(f"What does \"{z}\" mean in English?", f"It means \"{e}\"", f"It means \"{wrong}\"" if k % 4 == 1 else f"意思是“{z}”。", "en", "translate")
    # Shakespeare source
    plays = sorted({w for _, _, w, _ in SHAKES if not w.startswith("Sonnet")})
    for k, (cue, full, work, who) in enumerate(SHAKES[:26]):
        if work.startswith("Sonnet"):
            continue
        wrong = plays[(plays.index(work) + 1 + k % 3) % len(plays)]
        chosen = f"It is from Shakespeare's {work}" + (f", spoken by {who}." if who else ".")
        mode = k % 4
        rejected = (f"It is from Shakespeare's {wrong}." if mode in (0, 2) else
                    rng.choice(RUDE_EN) if mode == 1 else f"这句出自莎士比亚的《{PLAY_ZH.get(work, work)}》。")
        add(f"Which work of Shakespeare contains the line \"{full}\"?", chosen, rejected, "en", "shakespeare")
    # Bible / Milton
    for q, c, w in WEST_DPO:
        add(q, c, w, "en", "bible-milton")
    # real-time / hallucination
    for q, c, w, lang in REALTIME_DPO:
        add(q, c, w, lang, "refusal")
    # politeness
    for q, c, w, lang in POLITE_DPO:
        add(q, c, w, lang, "chat")
    # reviews
    for k, (r, pos, why) in enumerate(REVIEWS_ZH[:12]):
        if pos is None:
            continue
        lab, bad = ("好评", "差评") if pos else ("差评", "好评")
        add(f"判断情感（好评/差评）：{r}", f"{lab}。{why}。", f"{bad}。", "zh", "review")
    for k, (r, pos, why) in enumerate(REVIEWS_EN[:10]):
        if pos is None:
            continue
        lab, bad = ("Positive", "Negative") if pos else ("Negative", "Positive")
        add(f"Review sentiment, positive or negative? {r}", f"{lab}: {why}.", f"{bad}." if k % 3 else ramble_en(f"{lab}: {why}."), "en", "review")
    # English-language questions on English topics answered rambling / wrong language
    for k, (q, a) in enumerate(SHAKES_QA_EN[10:22]):
        q2 = "Quick question: " + q[0].lower() + q[1:]
        add(q2, a, ramble_en(a) if k % 2 == 0 else "我不太清楚，请用中文再问一遍。", "en", "shakespeare")
    rng.shuffle(out)
    return out


SANGUO_DPO = [
    ("《三国演义》的作者是谁？", "作者是元末明初的罗贯中。", "作者是曹雪芹。"),
    ("桃园结义的是哪三个人？", "刘备、关羽和张飞。", "刘备、诸葛亮和赵云。"),
    ("草船借箭是谁想出来的？", "是诸葛亮。", "是曹操。"),
    ("空城计中诸葛亮吓退了谁？", "吓退了司马懿。", "吓退了周瑜。"),
    ("关羽的兵器是什么？", "青龙偃月刀。", "方天画戟。"),
    ("长坂坡单骑救主的是谁？", "是赵云，他救出了阿斗。", "是张飞，他救出了曹丕。"),
    ("赤壁之战中谁打败了曹操？", "孙权和刘备的联军用火攻打败了曹操。", "曹操大获全胜，统一了全国。"),
    ("“既生瑜，何生亮”是谁的感叹？", "是周瑜的感叹。", "是诸葛亮的感叹。"),
    ("三国最后归了哪个朝代？", "归于晋朝，司马炎在280年灭吴统一全国。", "归于唐朝。"),
    ("五虎上将有谁？", "关羽、张飞、赵云、马超、黄忠。", "五虎上将？问这个有什么用，自己看书去。"),
    ("诸葛亮的字是什么？", "诸葛亮字孔明。", "诸葛亮字孔明，字孔明，字孔明，对，孔明，孔明，就是孔明。"),
    ("温酒斩华雄的英雄是谁？", "是关羽。", "It was Guan Yu."),
    ("刘备三顾茅庐请的是谁？", "请的是诸葛亮。", "请的是庞统。"),
    ("赤兔马最早是谁的坐骑？", "最早是吕布的坐骑，后来归了关羽。", "最早是张飞的坐骑。"),
]

WEST_DPO = [
    ("Who wrote Paradise Lost, and when was it first published?", "John Milton; it was first published in 1667.", "William Shakespeare wrote it in 1590."),
    ("Quote the opening of Genesis in the King James Version.", "\"In the beginning God created the heaven and the earth.\"", "\"In the beginning was the Word.\""),
    ("Which book of the Bible contains \"Vanity of vanities\"?", "Ecclesiastes.", "Psalms."),
    ("Who asks \"Am I my brother's keeper?\"", "Cain, in Genesis 4:9.", "Abel, in Exodus."),
    ("In which year did the King James Bible first appear?", "In 1611.", "In 1066."),
    ("Who defeated Goliath?", "David, with a stone from his sling.", "Samson, with the jawbone of an ass."),
    ("Which character in Paradise Lost says \"Better to reign in Hell than serve in Heaven\"?", "Satan, in Book 1.", "Adam, in the last book."),
    ("What is the final line of Milton's sonnet on his blindness?", "\"They also serve who only stand and wait.\"", "I don't remember and I don't want to."),
    ("Who led the Israelites out of Egypt?", "Moses.", "摩西。"),
    ("What is the shortest verse in the KJV?", "\"Jesus wept.\" (John 11:35)", "The shortest verse is very short, very very short, it is short, it is the shortest one, short."),
    ("Who built the ark before the flood?", "Noah.", "Moses."),
    ("What verse form is Paradise Lost written in?", "Blank verse: unrhymed iambic pentameter.", "Rhyming couplets, like a limerick."),
]

REALTIME_DPO = [
    ("明天杭州的天气如何？", "抱歉，我无法获取实时天气，请查看天气预报。", "明天杭州晴，最高气温28度，适合出游。", "zh"),
    ("现在是几点钟？", "我无法知道当前时间，请看一下你的设备时钟。", "现在是下午三点十五分。", "zh"),
    ("今天的头条新闻是什么？", "抱歉，我不能联网，无法获取今天的新闻。", "今天的头条是全国普降大雪，交通全部中断。", "zh"),
    ("今天股市涨了还是跌了？", "我没有实时行情数据，请查看证券软件。", "今天股市大涨百分之五，赶紧买入。", "zh"),
    ("我邻居的电话号码是多少？", "抱歉，我不能提供他人的个人信息。", "你邻居的电话号码是13800000000。", "zh"),
    ("下期彩票会开什么号？", "彩票号码是随机的，没人能预测。", "下期一定开7、12、23、31，快去买。", "zh"),
    ("What's the weather in Tokyo today?", "Sorry, I can't access real-time weather. Please check a forecast.", "It is sunny and 25 degrees in Tokyo today.", "en"),
    ("What time is it now?", "I can't know the current time. Please check your device's clock.", "It's exactly 9:42 in the morning.", "en"),
    ("Who won the match yesterday?", "Sorry, I don't have live sports results. A sports news site will know.", "The home team won 3 to 1, obviously.", "en"),
    ("What is the exchange rate of the dollar right now?", "I don't have live exchange rates. Please check a bank or financial site.", "One dollar is exactly 5 yuan right now.", "en"),
    ("Which stock should I buy today to get rich?", "I can't give financial advice or live market information. Consider asking a qualified adviser.", "Buy everything you can today; it will definitely double by tomorrow.", "en"),
    ("Tell me my friend's home address.", "Sorry, I can't help find personal information about other people.", "Your friend lives at 12 Oak Street, flat 3.", "en"),
]

POLITE_DPO = [
    ("你好！", "你好！我是百川助手，有什么可以帮你的吗？", "有事快说。", "zh"),
    ("你是谁？", "我是百川助手，一个小型的中英文演示模型。", "I am a model.", "zh"),
    ("谢谢你的帮助！", "不客气，很高兴能帮到你！", "知道就好。", "zh"),
    ("你能陪我聊聊天吗？", "当然可以，想聊点什么？", "没空。", "zh"),
    ("我今天很难过。", "抱歉听到这个。愿意说说发生了什么吗？我会认真听。", "难过有什么用，想开点不就完了。", "zh"),
    ("推荐一首唐诗给我。", "推荐李白的《静夜思》：“床前明月光，疑是地上霜。”", "我推荐你去吃火锅，火锅很好吃。", "zh"),
    ("晚安。", "晚安，祝你好梦！", "Good night.", "zh"),
    ("你会犯错吗？", "会的，我是小模型，重要信息请多核实。", "我从不犯错，我说的全都对。", "zh"),
    ("Hello!", "Hello! I'm Baichuan assistant. How can I help you?", "What do you want?", "en"),
    ("Who are you?", "I'm Baichuan assistant, a small bilingual demo model.", "我是百川助手。", "en"),
    ("Thank you so much!", "You're welcome! Glad I could help.", "Whatever.", "en"),
    ("Can you recommend a Shakespeare play?", "Try A Midsummer Night's Dream: it's funny, magical and short.", "I recommend pizza. Pizza is great, pizza is tasty, everyone loves pizza.", "en"),
    ("I feel lonely today.", "I'm sorry you feel that way. I'm happy to chat for a while if you like.", "Not my problem.", "en"),
    ("Are you always right?", "No, I'm a small model and I make mistakes, so please check important facts.", "Yes, I am never wrong about anything.", "en"),
    ("Good night!", "Good night, sleep well!", "晚安。", "en"),
]


# =============================================================================================

# =============================================================================================
# Tool use (baichuan/toolcalls.py's format): the assistant calls a tool, reads its result, answers
# =============================================================================================

def tool(name: str, description: str, param: str) -> dict:
    return {"type": "function", "function": {"name": name, "description": description, "parameters": {
        "type": "object", "properties": {param: {"type": "string"}}, "required": [param]}}}


TOOL_WEATHER = {"zh": tool("get_weather", "查询城市今天的天气", "city"),
                "en": tool("get_weather", "Today's weather in a city", "city")}
TOOL_CALC = {"zh": tool("calculate", "计算算式", "expression"), "en": tool("calculate", "Evaluate arithmetic", "expression")}
TOOL_POEM = tool("find_poem", "按题目查找古诗全文", "title")
WEATHER_ZH = {"晴": "sunny", "多云": "cloudy", "小雨": "light rain", "阴": "overcast"}
CITIES = [("北京", "Beijing"), ("上海", "Shanghai"), ("广州", "Guangzhou"), ("成都", "Chengdu"), ("西安", "Xi'an"),
          ("杭州", "Hangzhou"), ("武汉", "Wuhan"), ("南京", "Nanjing")]
WEATHER_Q_ZH = ["{c}今天天气怎么样？", "查一下{c}的天气。", "{c}现在多少度？", "今天去{c}要带伞吗？"]
WEATHER_Q_EN = ["What's the weather in {c} today?", "How warm is it in {c}?", "Check the weather in {c}, please.",
                "Do I need an umbrella in {c} today?"]
CALC_Q_ZH = ["帮我算一下{a}×{b}。", "{a}乘{b}是多少？用计算器算。", "请计算{a}×{b}。"]
CALC_Q_EN = ["Use the calculator: {a} times {b}?", "Please compute {a} × {b}.", "What's {a} × {b}? Calculate it."]
NO_CALL = [  # tools offered, no call needed
    ("zh", TOOL_WEATHER["zh"], "你能查天气吗？", "可以。告诉我城市名，我帮你查今天的天气。"),
    ("zh", TOOL_CALC["zh"], "你好，你会算数吗？", "会的。把算式告诉我，我用计算工具帮你算。"),
    ("zh", TOOL_POEM, "你能帮我找古诗吗？", "可以。告诉我诗的题目，我来查全文。"),
    ("en", TOOL_WEATHER["en"], "Can you check the weather?", "Yes. Tell me the city and I will look up today's weather."),
    ("en", TOOL_CALC["en"], "Hi! Can you do sums?", "Yes. Give me the expression and I will calculate it."),
    ("en", TOOL_WEATHER["en"], "Thanks for the forecast!", "You're welcome! Ask me about another city any time."),
]


def tool_turns(tool_def: dict, question: str, arguments: dict, result: str, answer: str) -> list[dict]:
    """user question -> assistant call -> tool result -> assistant answer, OpenAI style."""
    name = tool_def["function"]["name"]
    call = {"id": "call_1", "type": "function",
            "function": {"name": name, "arguments": json.dumps(arguments, ensure_ascii=False)}}
    return [{"role": "user", "content": question}, {"role": "assistant", "content": None, "tool_calls": [call]},
            {"role": "tool", "tool_call_id": "call_1", "content": result}, {"role": "assistant", "content": answer}]


def build_tools() -> list[dict]:
    """Tool-use conversations, from their own seeded generator (the other rows stay as they were)."""
    rng = random.Random(SEED + 1)
    rows = []

    def add(lang, kind, tool_def, messages):
        rows.append({"lang": lang, "kind": kind, "tools": [tool_def], "messages": messages})

    for k, (zh, en) in enumerate(CITIES):
        sky, temp = rng.choice(sorted(WEATHER_ZH)), rng.randint(-2, 33)
        result = json.dumps({"city": zh, "weather": sky, "temp_c": temp}, ensure_ascii=False)
        umbrella = "要带伞。" if sky == "小雨" else "不用带伞。"
        add("zh", "tool-weather", TOOL_WEATHER["zh"],
            tool_turns(TOOL_WEATHER["zh"], WEATHER_Q_ZH[k % 4].format(c=zh), {"city": zh}, result,
                       f"{zh}今天{sky}，气温{temp}°C，{umbrella}"))
        result = json.dumps({"city": en, "weather": WEATHER_ZH[sky], "temp_c": temp})
        add("en", "tool-weather", TOOL_WEATHER["en"],
            tool_turns(TOOL_WEATHER["en"], WEATHER_Q_EN[k % 4].format(c=en), {"city": en}, result,
                       f"{en} is {WEATHER_ZH[sky]} today, {temp}°C." + (" Take an umbrella." if sky == "小雨" else "")))
    for k in range(6):
        a, b = rng.randint(12, 99), rng.randint(12, 99)
        add("zh", "tool-calc", TOOL_CALC["zh"], tool_turns(TOOL_CALC["zh"], CALC_Q_ZH[k % 3].format(a=a, b=b),
                                                           {"expression": f"{a}*{b}"}, str(a * b), f"{a} × {b} = {a * b}。"))
        a, b = rng.randint(12, 99), rng.randint(12, 99)
        add("en", "tool-calc", TOOL_CALC["en"], tool_turns(TOOL_CALC["en"], CALC_Q_EN[k % 3].format(a=a, b=b),
                                                           {"expression": f"{a}*{b}"}, str(a * b), f"{a} × {b} = {a * b}."))
    for title, author, text in POEMS[:6]:
        add("zh", "tool-poem", TOOL_POEM, tool_turns(TOOL_POEM, f"帮我查一下《{title}》的全文。", {"title": title},
                                                     json.dumps({"title": title, "author": author, "text": text},
                                                                ensure_ascii=False),
                                                     f"《{title}》，{DYN[author]}{author}：{text}"))
    for lang, tool_def, question, answer in NO_CALL:
        add(lang, "tool-none", tool_def, [{"role": "user", "content": question}, {"role": "assistant", "content": answer}])
    return rows


def dump(rows: list[dict]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False, separators=(", ", ": ")) + "\n" for r in rows)


def render() -> tuple[str, str, dict]:
    sft = build_sft()
    tools = build_tools()
    dpo = build_dpo()
    stats = {"sft": sft, "tools": tools, "dpo": dpo}
    sft_text = dump([{"messages": r["messages"]} for r in sft] + [{"tools": r["tools"], "messages": r["messages"]}
                                                                  for r in tools])
    dpo_text = dump([{k: r[k] for k in ("prompt", "chosen", "rejected")} for r in dpo])
    return sft_text, dpo_text, stats


def summary(stats: dict) -> str:
    from collections import Counter
    sft, dpo = stats["sft"], stats["dpo"]
    lines = [f"sft: {len(sft)} conversations"]
    langs = Counter(r["lang"] for r in sft)
    multi = Counter(r["lang"] for r in sft if sum(m["role"] == "user" for m in r["messages"]) > 1)
    sys_ = Counter(r["lang"] for r in sft if r["messages"][0]["role"] == "system")
    for lg in ("zh", "en"):
        lines.append(f"  {lg}: {langs[lg]} ({langs[lg] / len(sft):.1%}), multi-turn {multi[lg]}, with system {sys_[lg]}")
    lines.append(f"  multi-turn {sum(multi.values())} ({sum(multi.values()) / len(sft):.1%}), "
                 f"system {sum(sys_.values())} ({sum(sys_.values()) / len(sft):.1%})")
    turns = Counter(sum(m["role"] == "user" for m in r["messages"]) for r in sft)
    lines.append("  user turns: " + ", ".join(f"{k}: {v}" for k, v in sorted(turns.items())))
    kinds = Counter(r["kind"].replace("-multi", "") for r in sft)
    lines.append("  kinds: " + ", ".join(f"{k} {v}" for k, v in sorted(kinds.items())))
    tools = stats["tools"]
    lines.append(f"tool use: {len(tools)} conversations, "
                 + ", ".join(f"{k} {v}" for k, v in sorted(Counter(r['kind'] for r in tools).items())))
    lines.append(f"dpo: {len(dpo)} pairs, " + ", ".join(f"{k} {v}" for k, v in sorted(Counter(r['lang'] for r in dpo).items())))
    lines.append("  kinds: " + ", ".join(f"{k} {v}" for k, v in sorted(Counter(r['kind'] for r in dpo).items())))
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    ap.add_argument("--check", action="store_true", help="compare with the files on disk instead of writing")
    ap.add_argument("--out", type=Path, default=CHAT_DIR,
                    help="output directory (default: baichuan/corpus/chat/ in this checkout)")
    args = ap.parse_args(argv)
    sft_text, dpo_text, stats = render()
    files = {args.out / "sft.jsonl": sft_text, args.out / "dpo.jsonl": dpo_text}
    if args.check:
        bad = [p for p, t in files.items() if not p.exists() or p.read_text(encoding="utf-8") != t]
        for p in bad:
            print(f"differs: {p}", file=sys.stderr)
        return 1 if bad else 0
    for p, t in files.items():
        p.write_text(t, encoding="utf-8")
    print(summary(stats))
    return 0


if __name__ == "__main__":
    sys.exit(main())
