"""Vectorised personal data that looks real: Chinese names, PRC resident ids, phones, e-mails."""

from __future__ import annotations

import numpy as np

SURNAMES = list(
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵万钱严覃武戴莫孔向汤"
)
GIVEN = list(
    "伟芳娜秀英敏静丽强磊军洋勇艳杰娟涛明超秀兰霞平刚桂英华建国志红玉兰文斌辉宇浩晨欣怡子轩梓涵思雨佳琪浩然俊杰雨桐欣妍一诺博文天佑雅婷嘉怡晓峰海燕春梅丹丹"
)
PINYIN_SURNAMES = ["wang", "li", "zhang", "liu", "chen", "yang", "huang", "zhao", "wu", "zhou", "xu", "sun"]
MAIL_DOMAINS = ["qq.com", "163.com", "126.com", "sina.com", "gmail.com", "hotmail.com", "outlook.com"]
STREETS = [
    "人民路",
    "解放路",
    "中山路",
    "建设路",
    "和平路",
    "长江路",
    "南京路",
    "新华路",
    "朝阳路",
    "滨江大道",
]
CITY_ZH = {
    "Beijing": "北京市",
    "Changsha": "长沙市",
    "Chengdu": "成都市",
    "Chongqing": "重庆市",
    "Dalian": "大连市",
    "Dongguan": "东莞市",
    "Guangzhou": "广州市",
    "Hangzhou": "杭州市",
    "Hefei": "合肥市",
    "Nanjing": "南京市",
    "Ningbo": "宁波市",
    "Qingdao": "青岛市",
    "Shanghai": "上海市",
    "Shenyang": "沈阳市",
    "Shenzhen": "深圳市",
    "Suzhou": "苏州市",
    "Taiyuan": "太原市",
    "Tianjin": "天津市",
    "Wuhan": "武汉市",
    "Xiamen": "厦门市",
    "Xi'an": "西安市",
    "Jinan": "济南市",
    "Zhengzhou": "郑州市",
    "Wuxi": "无锡市",
    "Kunming": "昆明市",
}

_WEIGHTS = np.array([7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2])
_CHECK = np.array(list("10X98765432"))


def names(rng: np.random.Generator, n: int) -> np.ndarray:
    sur = np.array(SURNAMES)[rng.integers(0, len(SURNAMES), n)]
    g1 = np.array(GIVEN)[rng.integers(0, len(GIVEN), n)]
    g2 = np.array(GIVEN)[rng.integers(0, len(GIVEN), n)]
    two = rng.random(n) < 0.7  # most given names have two characters
    return np.char.add(np.char.add(sur, g1), np.where(two, g2, ""))


def national_ids(
    area_codes: np.ndarray, birth: np.ndarray, male: np.ndarray, serial: np.ndarray
) -> np.ndarray:
    """18-character PRC resident ids: area + YYYYMMDD + sequence (odd = male) + ISO 7064 check."""
    n = len(birth)
    if n == 0:
        return np.zeros(0, dtype="U18")
    seq = (serial % 500) * 2 + np.where(male, 1, 0)  # 3 digits, parity = gender
    ymd = np.datetime_as_string(birth.astype("datetime64[D]")).astype("U10")
    body = np.char.add(
        np.char.add(area_codes.astype("U6"), np.char.replace(ymd, "-", "")),
        np.char.zfill(seq.astype("U3"), 3),
    )
    digits = np.frombuffer(body.astype("S17").tobytes(), dtype=np.uint8).reshape(n, 17) - ord("0")
    check = _CHECK[(digits * _WEIGHTS).sum(axis=1) % 11]
    return np.char.add(body, check)


def check_digit_ok(nid: str) -> bool:
    digits = np.array([int(c) for c in nid[:17]])
    return _CHECK[(digits * _WEIGHTS).sum() % 11] == nid[17]


def mobiles(rng: np.random.Generator, n: int) -> np.ndarray:
    prefix = np.array(["13", "15", "17", "18", "19"])[rng.integers(0, 5, n)]
    return np.char.add(prefix, np.char.zfill(rng.integers(0, 10**9, n).astype("U9"), 9))


def emails(idx: np.ndarray, seed: int) -> np.ndarray:
    """Deterministic per customer number; about 15 % gave no e-mail."""
    if len(idx) == 0:
        return np.zeros(0, dtype="U40")
    user = np.array(PINYIN_SURNAMES)[(idx * 7 + seed) % len(PINYIN_SURNAMES)]
    domain = np.array(MAIL_DOMAINS)[(idx * 31 + seed) % len(MAIL_DOMAINS)]
    mail = np.char.add(np.char.add(np.char.add(user, (idx + 1).astype("U10")), "@"), domain)
    return np.where((idx * 13 + seed) % 100 < 15, "", mail)


def addresses(cities: np.ndarray, idx: np.ndarray) -> np.ndarray:
    if len(idx) == 0:
        return np.zeros(0, dtype="U40")
    zh = np.array([CITY_ZH.get(c, c) for c in cities])
    street = np.array(STREETS)[(idx * 17) % len(STREETS)]
    number = ((idx * 37) % 998 + 1).astype("U3")
    return np.char.add(np.char.add(np.char.add(zh, street), number), "号")
