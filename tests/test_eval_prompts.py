"""Prompt strings, byte for byte, against the examples of ../shared/docs/eval-protocol.md, built from
the real CSVs (../shared/evaldata, or BAICHUAN_EVALDATA); answer token ids against the released
tokenizers (../shared/baichuan-assets)."""

import os
import random
from pathlib import Path

import pytest
from conftest import ASSETS, REPO, assets

from baichuan.eval.data import load_benchmark
from baichuan.eval.protocols import (
    ContinuationEncoder,
    build_prompt,
    fit_prompt,
    letter_ids,
    render_shot,
    shot_order,
    subject_name,
    template,
)

EVALDATA = Path(os.environ.get("BAICHUAN_EVALDATA", REPO.parent / "shared" / "evaldata"))


@pytest.fixture(scope="module")
def data():
    if not (EVALDATA / "ceval").is_dir():
        pytest.skip(f"evaluation data {EVALDATA} is absent (set BAICHUAN_EVALDATA to its folder)")
    return EVALDATA


def prompt(data, protocol, bench, subject, index=0, shots=5, order=None):
    b = load_benchmark(bench, data, [subject])
    t = template(protocol, bench)
    pool = b.shots[subject]
    chosen = [pool[i] for i in (order if order is not None else range(shots))]
    return build_prompt(t, subject_name(t, subject, b.names[subject]), chosen, b.questions[subject][index])[1]


# §1.2: the concrete 5-shot C-Eval example (all five shots written out here)
CEVAL_LMEVAL_5SHOT = (
    "以下是中国关于计算机网络的单项选择题，请选出其中的正确答案。\n\n"
    "下列设备属于资源子网的是____。\nA. 计算机软件\nB. 网桥\nC. 交换机\nD. 路由器\n答案： A\n\n"
    "滑动窗口的作用是____。\nA. 流量控制\nB. 拥塞控制\nC. 路由控制\nD. 差错控制\n答案： A\n\n"
    "在OSI参考模型中，直接为会话层提供服务的是____。\nA. 应用层\nB. 表示层\nC. 传输层\nD. 网络层\n答案： C\n\n"
    "协议是指在____之间进行通信的规则或约定。\nA. 同一结点的上下层\nB. 不同结点\nC. 相邻实体\nD. 不同结点对等实体\n答案： D\n\n"
    "主机甲与主机乙之间使用后退N帧协议(GBN)传输数据，甲的发送窗口尺寸为1000，数据帧长为1000字节，信道带宽为100Mbps，"
    "乙每收到一个数据帧立即利用一个短帧(忽略其传输延迟)进行确认，若甲、乙之间的单向传播延迟是50ms，"
    "则甲可以达到的最大平均数据传输速率约为____。\nA. 10Mbps\nB. 20Mbps\nC. 80Mbps\nD. 100Mbps\n答案： C\n\n"
    "使用位填充方法，以01111110为位首flag，数据为011011111111111111110010，求问传送时要添加几个0____"
    "\nA. 1\nB. 2\nC. 3\nD. 4\n答案："
)
NET_Q0 = "下列设备属于资源子网的是____。\nA. 计算机软件\nB. 网桥\nC. 交换机\nD. 路由器\n答案："
NET_Q1 = "滑动窗口的作用是____。\nA. 流量控制\nB. 拥塞控制\nC. 路由控制\nD. 差错控制\n答案："
NET_TEST = ("使用位填充方法，以01111110为位首flag，数据为011011111111111111110010，求问传送时要添加几个0____"
            "\nA. 1\nB. 2\nC. 3\nD. 4\n答案：")
ALGEBRA_HEADER = "The following are multiple choice questions (with answers) about{} abstract algebra.\n\n"
ALGEBRA_SHOT0 = "Find all c in Z_3 such that Z_3[x]/(x^2 + c) is a field.\nA. 0\nB. 1\nC. 2\nD. 3\nAnswer: B\n\n"
ALGEBRA_SHOT1 = ("Statement 1 | If aH is an element of a factor group, then |aH| divides |a|. Statement 2 | If H and K "
                 "are subgroups of G then HK is a subgroup of G.\nA. True, True\nB. False, False\nC. True, False\n"
                 "D. False, True\nAnswer: B\n\n")
ALGEBRA_TEST = "Find the degree for the given field extension Q(sqrt(2), sqrt(3), sqrt(18)) over Q.\nA. 0\nB. 4\nC. 2\nD. 6\nAnswer:"
AGRONOMY_HEADER = "以下是关于农学的单项选择题，请直接给出正确答案的选项。\n\n"


def test_lmeval_ceval_5shot_is_the_documented_example(data):
    assert prompt(data, "lm-eval", "ceval", "computer_network") == CEVAL_LMEVAL_5SHOT


def test_baichuan_ceval_layout_single_newlines_no_space_and_kaoshi(data):
    # §2.1: header ends in one "\n"; each item is preceded by "\n"; "答案：A" without a space
    got = prompt(data, "baichuan", "ceval", "computer_network", order=[0, 1])
    assert got == ("以下是中国关于计算机网络考试的单项选择题，请选出其中的正确答案。\n"
                   "\n" + NET_Q0 + "A" + "\n" + NET_Q1 + "A" + "\n" + NET_TEST)
    zero = prompt(data, "baichuan", "ceval", "computer_network", order=[])
    assert zero == "以下是中国关于计算机网络考试的单项选择题，请选出其中的正确答案。\n\n" + NET_TEST


def test_baichuan_ceval_uses_task2desc_name_for_mao_zedong_thought(data):
    got = prompt(data, "baichuan", "ceval", "mao_zedong_thought", shots=0)
    assert got.startswith("以下是中国关于毛泽东思想和中国特色社会主义理论概论考试的单项选择题")
    lm = prompt(data, "lm-eval", "ceval", "mao_zedong_thought", shots=0)
    assert lm.startswith("以下是中国关于毛泽东思想和中国特色社会主义理论体系概论的单项选择题")


def test_baichuan_ceval_shots_are_a_seeded_per_question_shuffle(data):
    t = template("baichuan", "ceval")
    orders = [shot_order(t, 5, 5, 1234, "computer_network", i) for i in range(19)]
    assert all(sorted(o) == [0, 1, 2, 3, 4] for o in orders)
    assert len({tuple(o) for o in orders}) > 5                     # reshuffled per question
    assert orders == [shot_order(t, 5, 5, 1234, "computer_network", i) for i in range(19)]  # repeatable
    assert orders != [shot_order(t, 5, 5, 99, "computer_network", i) for i in range(19)]
    assert shot_order(t, 5, 3, 1234, "law", 7) == shot_order(t, 5, 5, 1234, "law", 7)[:3]   # shuffle, then first k
    lm = template("lm-eval", "ceval")
    assert shot_order(lm, 5, 5, 1234, "law", 7) == [0, 1, 2, 3, 4]


def test_official_ceval_blank_lines_and_no_space(data):
    # §4 C-Eval official: "\n\n" after the header and between shots, "答案：A"
    got = prompt(data, "official", "ceval", "computer_network", order=[0, 1])
    assert got == ("以下是中国关于计算机网络考试的单项选择题，请选出其中的正确答案。\n\n"
                   + NET_Q0 + "A\n\n" + NET_Q1 + "A\n\n" + NET_TEST)


def test_mmlu_headers_single_and_double_space(data):
    lm = prompt(data, "lm-eval", "mmlu", "abstract_algebra", shots=2)
    assert lm == ALGEBRA_HEADER.format("") + ALGEBRA_SHOT0 + ALGEBRA_SHOT1 + ALGEBRA_TEST
    # §1.2's MMLU sketch: "...\nD. 3\nAnswer: B\n\nFind the degree...\nA. 0\n...\nAnswer:"
    assert prompt(data, "lm-eval", "mmlu", "abstract_algebra", shots=1).endswith("\nD. 3\nAnswer: B\n\n" + ALGEBRA_TEST)
    # §3: hendrycks' format_subject puts a space before every word: "about  abstract algebra."
    bc = prompt(data, "baichuan", "mmlu", "abstract_algebra", shots=2)
    assert bc == ALGEBRA_HEADER.format(" ") + ALGEBRA_SHOT0 + ALGEBRA_SHOT1 + ALGEBRA_TEST
    assert prompt(data, "baichuan", "mmlu", "high_school_us_history", shots=0).startswith(
        "The following are multiple choice questions (with answers) about  high school us history.\n\n")


def test_cmmlu_official_and_lmeval(data):
    test_q = "在农业生产中被当作极其重要的劳动对象发挥作用，最主要的不可替代的基本生产资料是\nA. 农业生产工具\nB. 土地\nC. 劳动力\nD. 资金\n"
    official = prompt(data, "baichuan", "cmmlu", "agronomy", shots=2)
    assert official == (AGRONOMY_HEADER
                        + "题目：肉牛屠宰后，胴体的哪个部位肉质较好\nA. 胸\nB. 腹\nC. 大腿\nD. 小腿\n答案是：C\n\n"
                        + "题目：下列鸭品种中，产蛋量最高的品种是\nA. 高邮鸭\nB. 北京鸭\nC. 樱桃谷鸭\nD. 绍鸭\n答案是：D\n\n"
                        + "题目：" + test_q + "答案是：")
    lm = prompt(data, "lm-eval", "cmmlu", "agronomy", shots=2)
    assert lm == (AGRONOMY_HEADER
                  + "肉牛屠宰后，胴体的哪个部位肉质较好\nA. 胸\nB. 腹\nC. 大腿\nD. 小腿\n答案： C\n\n"
                  + "下列鸭品种中，产蛋量最高的品种是\nA. 高邮鸭\nB. 北京鸭\nC. 樱桃谷鸭\nD. 绍鸭\n答案： D\n\n"
                  + test_q + "答案：")


def test_lmeval_strips_the_question_and_the_scripts_do_not(data):
    # cmmlu/test/chinese_food_culture.csv row 73 has spaces around its question
    b = load_benchmark("cmmlu", data, ["chinese_food_culture"])
    q = b.questions["chinese_food_culture"][72]
    assert q.question == "“ 猫耳朵 ” 是哪里的特色小吃 "
    lm = prompt(data, "lm-eval", "cmmlu", "chinese_food_culture", index=72, shots=0)
    assert "\n\n“ 猫耳朵 ” 是哪里的特色小吃\nA. " in lm
    official = prompt(data, "baichuan", "cmmlu", "chinese_food_culture", index=72, shots=0)
    assert "题目：“ 猫耳朵 ” 是哪里的特色小吃 \nA. " in official


def test_quoted_crlf_and_none_options_are_kept(data):
    # C-Eval keeps CRLF inside quoted fields (pandas and HF datasets keep them too)
    b = load_benchmark("ceval", data, ["advanced_mathematics"])
    assert "\\begin{cases}\r\nx" in b.questions["advanced_mathematics"][14].question
    # MMLU: "None" is an answer text (cais/mmlu keeps it; pandas >= 2.0 would read NaN)
    m = load_benchmark("mmlu", data, ["college_computer_science"])
    assert m.questions["college_computer_science"][10].options[0] == "None"


class CharTokenizer:
    """One token per character: token counts are character counts, so fitting is easy to reason about."""
    eos_id = 2

    def encode(self, text):
        return [ord(c) for c in text]


def test_drop_last_shot_reduces_k_while_strictly_longer(data):
    b = load_benchmark("mmlu", data, ["abstract_algebra"])
    t, tok = template("baichuan", "mmlu"), CharTokenizer()
    name = subject_name(t, "abstract_algebra", "")
    shots, q = b.shots["abstract_algebra"], b.questions["abstract_algebra"][0]
    three = len(build_prompt(t, name, shots[:3], q)[1])
    assert fit_prompt(t, tok, name, shots, q, three).shots == 3       # "while > 2048": equal fits
    assert fit_prompt(t, tok, name, shots, q, three - 1).shots == 2
    assert fit_prompt(t, tok, name, shots, q, 10).shots == 0          # never below zero shots
    assert fit_prompt(t, tok, name, shots, q, 10).text.startswith(ALGEBRA_HEADER.format(" "))


def test_cmmlu_drops_every_longest_shot_until_the_sum_is_below_the_budget(data):
    b = load_benchmark("cmmlu", data, ["agronomy"])
    t, tok = template("baichuan", "cmmlu"), CharTokenizer()
    name = subject_name(t, "agronomy", b.names["agronomy"])
    shots, q = b.shots["agronomy"], b.questions["agronomy"][0]
    lens = [len(render_shot(t, s)) for s in shots]
    fixed = len(t.header.format(name=name)) + len("题目：") + len(q.question) + sum(4 + len(o) for o in q.options) + len("\n答案是：")
    assert fit_prompt(t, tok, name, shots, q, fixed + sum(lens) + 1).shots == 5
    # the condition is ">=": a budget of exactly header + test + shots drops the longest shot(s)
    cut = fit_prompt(t, tok, name, shots, q, fixed + sum(lens))
    longest = max(lens)
    assert cut.shots == 5 - lens.count(longest)
    kept = [s for s, n in zip(shots, lens) if n != longest]
    assert cut.text == build_prompt(t, name, kept, q)[1]
    # header + test item alone over the limit: the test item alone, no header
    alone = fit_prompt(t, tok, name, shots, q, fixed - 1)
    assert alone.text.startswith("题目：") and alone.shots == 0


def test_letter_token_ids_of_the_released_tokenizers():
    from baichuan.tokenizer import Tokenizer
    b2 = Tokenizer.load(assets("baichuan2", "tokenizer.model"))
    b1 = Tokenizer.load(assets("baichuan1", "tokenizer.model"))
    assert letter_ids(template("baichuan", "mmlu"), b2) == [92343, 92359, 92344, 92363]
    assert letter_ids(template("baichuan", "ceval"), b1) == [703, 731, 702, 743]      # "▁A": dummy prefix
    assert letter_ids(template("baichuan", "cmmlu"), b2) == [92343, 92359, 92344, 92363]
    assert letter_ids(template("baichuan", "cmmlu"), b1) == [31132, 31139, 31133, 31140]  # the bare piece "A"
    # lm-eval: " A" after "答案：" / "Answer:" is one token per tokenizer, "▁A"
    for tok, expect in ((b2, [1401, 1432, 1399, 1443]), (b1, [703, 731, 702, 743])):
        for ctx in (CEVAL_LMEVAL_5SHOT, ALGEBRA_HEADER.format("") + ALGEBRA_TEST):
            assert ContinuationEncoder(tok)(ctx) == [[i] for i in expect]


def test_fast_continuations_equal_encode_whole_then_split(data, small_tokenizer):
    """The cached tail computation against lm-eval's rule on every prompt of a few subjects."""
    from baichuan.tokenizer import Tokenizer
    toks = [small_tokenizer]
    for name in ("baichuan1", "baichuan2"):
        path = ASSETS / name / "tokenizer.model"
        if path.exists():
            toks.append(Tokenizer.load(path))
    rng = random.Random(0)
    for tok in toks:
        fast = ContinuationEncoder(tok)
        assert fast.local
        for bench, subject in (("ceval", "computer_network"), ("cmmlu", "chinese_food_culture"), ("mmlu", "virology")):
            b = load_benchmark(bench, data, [subject])
            t = template("lm-eval", bench)
            questions = rng.sample(b.questions[subject], 12)
            for q in questions:
                ctx = build_prompt(t, subject_name(t, subject, b.names[subject]), b.shots[subject], q)[1]
                ids = tok.encode(ctx)
                assert fast(ctx) == [tok.encode(ctx + " " + L)[len(ids):] for L in "ABCD"]
