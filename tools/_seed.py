"""Deterministic, realistic seed data for the embedded CRM and ERP.

Same seed, same data: 500 customers with Chinese and English names, 5,000 orders over
three months including the Singles' Day (11.11) promotion with its own return rules,
three warehouses in two currencies, payments for every order.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from sqlmodel import Session

from chamberlain.tools.crm.embedded import EmbeddedCrm
from chamberlain.tools.crm.models import Account, Customer, Interaction
from chamberlain.tools.erp.embedded import EmbeddedErp
from chamberlain.tools.erp.models import Inventory, Order, OrderLine, Payment, Product, Shipment, Warehouse

SINGLES_DAY = "singles-day-1111"
REFERENCE_DAY = datetime(2026, 11, 25, tzinfo=UTC)  # "today" for seeded data: deliveries before it happened

_SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何林罗高"
_GIVEN = [
    "伟",
    "芳",
    "娜",
    "秀英",
    "敏",
    "静",
    "丽",
    "强",
    "磊",
    "军",
    "洋",
    "勇",
    "艳",
    "杰",
    "娟",
    "涛",
    "明",
    "超",
    "霞",
    "平",
]
_FIRST = ["Emma", "Liam", "Olivia", "Noah", "Ava", "Ethan", "Mia", "Lucas", "Chloe", "Ryan", "Grace", "Daniel", "Lily"]
_LAST = ["Smith", "Wong", "Chan", "Lee", "Brown", "Ng", "Taylor", "Cheung", "Wilson", "Lau", "Martin", "Ho"]
_CITIES = [
    "上海市浦东新区",
    "北京市朝阳区",
    "深圳市南山区",
    "杭州市西湖区",
    "广州市天河区",
    "Hong Kong Central",
    "成都市武侯区",
]
_CATALOG = {
    "apparel": [("T-shirt 纯棉T恤", 79), ("Down jacket 羽绒服", 899), ("Jeans 牛仔裤", 259), ("Wool scarf 围巾", 129)],
    "shoes": [("Running shoes 跑鞋", 599), ("Leather boots 皮靴", 1099), ("Slippers 拖鞋", 49)],
    "electronics": [
        ("Earbuds 蓝牙耳机", 399),
        ("Phone 手机", 4299),
        ("Power bank 充电宝", 149),
        ("Smartwatch 手表", 1299),
    ],
    "home": [("Rice cooker 电饭煲", 499), ("Air purifier 空气净化器", 1599), ("Bedding set 床品套件", 359)],
    "cosmetics": [("Face cream 面霜", 320), ("Lipstick 口红", 220)],
    "food": [("Tea gift box 茶叶礼盒", 188), ("Mooncakes 月饼", 128)],
}
_WAREHOUSES = [  # code, city, address, currency
    ("SH1", "Shanghai", "上海市嘉定区 物流园 88号", "CNY"),
    ("SZ1", "Shenzhen", "深圳市宝安区 仓储中心 12号", "CNY"),
    ("HK1", "Hong Kong", "Kwai Chung Container Terminal 3, Hong Kong", "HKD"),
]
_HKD_PER_CNY = 1.08


def _name(rng: random.Random) -> tuple[str, str]:
    if rng.random() < 0.65:
        return rng.choice(_SURNAMES) + rng.choice(_GIVEN), "zh"
    return f"{rng.choice(_FIRST)} {rng.choice(_LAST)}", "en"


def seed(erp: EmbeddedErp, crm: EmbeddedCrm, *, customers: int = 500, orders: int = 5000, seed: int = 1111) -> None:
    """Create the tables and fill them; deterministic for a given ``seed``."""
    rng = random.Random(seed)
    erp.create_tables()
    crm.create_tables()
    products = [
        Product(sku=f"{category[:3].upper()}-{i:03d}", name=name, category=category, price=float(price))
        for category, items in _CATALOG.items()
        for i, (name, price) in enumerate(items, 1)
    ]
    people: list[Customer] = []
    for i in range(customers):
        name, language = _name(rng)
        people.append(
            Customer(
                id=f"C{10000 + i}",
                name=name,
                language=language,
                tier=rng.choice(["standard"] * 6 + ["gold"] * 3 + ["vip"]),
                email=f"customer{10000 + i}@example.cn",
                phone=f"+86 1{rng.randint(30, 89)}-{rng.randint(0, 9999):04d}-{rng.randint(0, 9999):04d}",
                address=f"{rng.choice(_CITIES)} {rng.randint(1, 999)}号",
            )
        )
    directory = [(person.id, person.address) for person in people]
    with Session(crm.engine) as session:
        session.add_all(people)
        session.flush()
        for person in people:
            opened = REFERENCE_DAY - timedelta(days=rng.randint(30, 900))
            session.add(
                Account(customer_id=person.id, channel=rng.choice(["web", "app", "tmall", "jd"]), opened_at=opened)
            )
            session.add(Interaction(customer_id=person.id, channel="app", summary="signed up", at=opened))
        session.commit()

    with Session(erp.engine) as session:
        session.add_all(Warehouse(code=c, city=city, address=a, currency=cur) for c, city, a, cur in _WAREHOUSES)
        session.add_all(products)
        session.flush()
        session.add_all(
            Inventory(sku=p.sku, warehouse=w[0], on_hand=rng.randint(20, 500)) for p in products for w in _WAREHOUSES
        )
        start = datetime(2026, 8, 20, tzinfo=UTC)
        for i in range(orders):
            if rng.random() < 0.3:  # a third of the orders fall into the 11.11 promotion
                placed = datetime(2026, 11, 1, tzinfo=UTC) + timedelta(minutes=rng.randint(0, 11 * 24 * 60 - 1))
            else:
                placed = start + timedelta(minutes=rng.randint(0, 95 * 24 * 60))
            warehouse, _, _, currency = rng.choice(_WAREHOUSES)
            rate = _HKD_PER_CNY if currency == "HKD" else 1.0
            order_id = f"A{1000 + i}"
            lines = []
            for line_no, product in enumerate(rng.sample(products, rng.randint(1, 3)), 1):
                discount = 0.8 if placed.month == 11 and placed.day <= 11 else 1.0
                price = round(product.price * rate * discount, 2)
                lines.append(
                    OrderLine(
                        order_id=order_id,
                        line_no=line_no,
                        sku=product.sku,
                        quantity=rng.randint(1, 3),
                        unit_price=price,
                    )
                )
            delivered = placed + timedelta(days=rng.randint(2, 6), hours=rng.randint(0, 23))
            done = delivered < REFERENCE_DAY
            total = round(sum(line.unit_price * line.quantity for line in lines), 2)
            customer_id, address = rng.choice(directory)
            session.add(
                Order(
                    id=order_id,
                    customer_id=customer_id,
                    placed_at=placed,
                    delivered_at=delivered if done else None,
                    status="delivered" if done else "shipped",
                    currency=currency,
                    total=total,
                    promotion=SINGLES_DAY if placed.month == 11 and placed.day <= 11 else None,
                    warehouse=warehouse,
                    ship_to=address,
                )
            )
            session.add_all(lines)
            session.add(
                Payment(
                    order_id=order_id,
                    method=rng.choice(["alipay", "wechat", "card"]),
                    amount=total,
                    currency=currency,
                )
            )
            carrier = rng.choice(["SF", "JD", "ZTO"])
            tracking = f"{carrier}{rng.randint(10**9, 10**10 - 1)}"
            shipped = placed + timedelta(hours=rng.randint(4, 30))
            session.add(Shipment(order_id=order_id, carrier=carrier, tracking=tracking, shipped_at=shipped))
        session.commit()
