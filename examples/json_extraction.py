"""JSON-schema extraction from Chinese text with the official openai client against `baichuan serve`.

`client.chat.completions.parse` sends the pydantic model as a strict JSON schema; the server
constrains decoding to it, so the reply always parses into a `Contact`, whatever the model.

    baichuan serve runs/speedrun/sft/model --api-key sk-local &
    python examples/json_extraction.py --base-url http://127.0.0.1:8000/v1 --api-key sk-local
"""

import argparse
from typing import Literal

from pydantic import BaseModel, Field

TEXT = "您好，我是杭州西湖茶叶公司的王丽，电话 0571-8888-1234，想订购 30 斤龙井，下周三前送到。"


class Order(BaseModel):
    product: str = Field(max_length=10, description="货品")
    quantity: int = Field(ge=1, le=10000, description="数量")
    unit: Literal["斤", "公斤", "箱", "件"]


class Contact(BaseModel):
    name: str = Field(max_length=8, description="姓名")
    company: str | None = Field(max_length=20, description="公司")
    phone: str = Field(pattern=r"^[0-9-]{7,15}$")
    order: Order


def main(argv=None) -> Contact:
    from openai import OpenAI
    ap = argparse.ArgumentParser(description="extract a contact and an order from Chinese text")
    ap.add_argument("text", nargs="?", default=TEXT)
    ap.add_argument("--base-url", default="http://127.0.0.1:8000/v1")
    ap.add_argument("--api-key", default="sk-local")
    ap.add_argument("--model", default=None, help="default: the server's only model")
    args = ap.parse_args(argv)
    client = OpenAI(base_url=args.base_url, api_key=args.api_key)
    model = args.model or client.models.list().data[0].id
    reply = client.chat.completions.parse(
        model=model, response_format=Contact, max_tokens=256, temperature=0,
        messages=[{"role": "system", "content": "从文本中提取联系人和订单信息。"}, {"role": "user", "content": args.text}])
    contact = reply.choices[0].message.parsed
    print(contact.model_dump_json(indent=2))
    return contact


if __name__ == "__main__":
    main()
