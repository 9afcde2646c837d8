"""Reason codes with their Chinese and English texts (one table for verdicts and claims)."""

from __future__ import annotations

REASONS: dict[str, tuple[str, str]] = {
    # underwriting
    "PLANTED": ("已种植申报作物，物候与作物日历一致", "declared crop planted; phenology matches the crop calendar"),
    "NOT_PLANTED": ("峰值期未见作物冠层（NDVI上四分位 {p75:.2f} < {min:.2f}）",
                    "no crop canopy in the peak window (NDVI p75 {p75:.2f} < {min:.2f})"),
    "CROP_MISMATCH_SOWING": ("播种期已有植被覆盖（最低NDVI {ndvi:.2f}），非申报作物当季播种",
                             "vegetation already present through the sowing window (lowest NDVI "
                             "{ndvi:.2f}): not the declared crop sown this season"),
    "CROP_MISMATCH_TIMING": ("植被峰值出现在 {date}，不在申报作物峰值期内",
                             "vegetation peaks on {date}, outside the declared crop's peak window"),
    "PARTIAL_PLANTING": ("仅约 {pct:.0%} 的地块有作物", "only about {pct:.0%} of the parcel is planted"),
    "AREA_SHORTFALL": ("实测种植面积 {measured:.1f} 亩，仅为申报 {declared:.1f} 亩的 {ratio:.0%}",
                       "measured planted area {measured:.1f} mu is {ratio:.0%} of the declared "
                       "{declared:.1f} mu"),
    "AREA_EXCESS": ("实测种植面积 {measured:.1f} 亩大于申报 {declared:.1f} 亩",
                    "measured planted area {measured:.1f} mu exceeds the declared {declared:.1f} mu"),
    "NO_EMERGENCE": ("出苗期未观测到出苗", "no emergence seen in the emergence window"),
    "LATE_EMERGENCE": ("出苗偏晚（{date}）", "late emergence ({date})"),
    "SMALL_PARCEL": ("地块过小（完整像元 {n} 个），遥感结果仅供参考",
                     "parcel too small to judge reliably ({n} whole pixels)"),
    "FEW_CLEAR_OBS": ("季内晴空观测仅 {n} 次", "only {n} clear observations in the season"),
    "NO_PEAK_OBS": ("峰值期无晴空观测", "no clear observation in the peak window"),
    "NO_PIXELS": ("地块不在影像范围内或无可用像元", "parcel outside the imagery or without pixels"),
    "UNKNOWN_CROP": ("作物代码 {crop} 无作物日历", "no crop calendar for crop code {crop}"),
    "INVALID_GEOMETRY": ("地块图形无效：{detail}", "invalid parcel geometry: {detail}"),
    "INVALID_ATTRIBUTES": ("地块属性缺失或无效：{detail}", "missing or invalid attributes: {detail}"),
    # loss assessment
    "LOSS_ESTIMATED": ("与健康同类地块及灾前自身对比估算损失",
                       "loss estimated against healthy same-crop neighbours and the parcel's own "
                       "pre-event state"),
    "NO_PRE_EVENT_OBS": ("灾前 {days} 天内无晴空观测", "no clear observation in the {days} days before the event"),
    "NO_POST_EVENT_OBS": ("灾后窗口内无晴空观测", "no clear observation in the post-event window"),
    "FEW_NEIGHBOURS": ("健康同类地块不足（{n} 块）", "too few healthy same-crop neighbours ({n})"),
    "NOT_AFFECTED_CROP": ("作物 {crop} 不在本次灾害影响作物之列", "crop {crop} is not among the event's affected crops"),
    "OUTSIDE_FOOTPRINT": ("地块在灾害范围外", "parcel outside the event footprint"),
    "BELOW_THRESHOLD": ("损失率 {rate:.0%} 低于起赔点 {threshold:.0%}",
                        "loss rate {rate:.0%} below the payout threshold {threshold:.0%}"),
    "TOTAL_LOSS": ("损失率 {rate:.0%} 达到全损标准 {total:.0%}，按全损赔付",
                   "loss rate {rate:.0%} reaches total loss at {total:.0%}: paid as a total loss"),
    "FLOODED": ("灾后观测到水淹面积约 {pct:.0%}", "about {pct:.0%} of the parcel seen flooded after the event"),
}


def reason(code: str, **values) -> tuple[str, str, str]:
    """``(code, text_zh, text_en)`` for a reason code, filled with ``values``."""
    zh, en = REASONS[code]
    return code, zh.format(**values), en.format(**values)


def join_reasons(items: list[tuple[str, str, str]]) -> dict[str, str]:
    """The three verdict / claim columns ``reasons`` (codes), ``reasons_zh``, ``reasons_en``."""
    return {"reasons": ";".join(i[0] for i in items),
            "reasons_zh": "；".join(i[1] for i in items),
            "reasons_en": "; ".join(i[2] for i in items)}
