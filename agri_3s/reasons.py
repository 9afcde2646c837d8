"""Reason codes with their Chinese and English texts (one table for verdicts and claims)."""

from __future__ import annotations

REASONS: dict[str, tuple[str, str]] = {
    # underwriting
    "PLANTED": ("已种植申报作物，物候与作物日历一致", "declared crop planted; phenology matches the crop calendar"),
    "NOT_PLANTED": ("出苗至峰值期未见作物冠层（NDVI上四分位 {p75:.2f} < {min:.2f}）",
                    "no crop canopy from emergence to the end of the peak window (NDVI p75 "
                    "{p75:.2f} < {min:.2f})"),
    "CROP_MISMATCH_SOWING": ("播种期已有植被覆盖（最低NDVI {ndvi:.2f}），非申报作物当季播种",
                             "vegetation already present through the sowing window (lowest NDVI "
                             "{ndvi:.2f}): not the declared crop sown this season"),
    "EMERGED_BEFORE_SOWING": ("{date} 已出苗，早于申报作物播种期（{start} 起），非申报作物",
                              "emerged on {date}, before the declared crop's sowing window "
                              "(from {start}): another crop"),
    "CROP_MISMATCH_TIMING": ("植被峰值出现在 {date}，不在申报作物峰值期内",
                             "vegetation peaks on {date}, outside the declared crop's peak window"),
    "PARTIAL_PLANTING": ("仅约 {pct:.0%} 的地块有作物", "only about {pct:.0%} of the parcel is planted"),
    "AREA_SHORTFALL": ("实测种植面积 {measured:.1f} 亩，仅为申报 {declared:.1f} 亩的 {ratio:.0%}",
                       "measured planted area {measured:.1f} mu is {ratio:.0%} of the declared "
                       "{declared:.1f} mu"),
    "AREA_EXCESS": ("实测种植面积 {measured:.1f} 亩大于申报 {declared:.1f} 亩",
                    "measured planted area {measured:.1f} mu exceeds the declared {declared:.1f} mu"),
    "CANOPY_NOT_REACHED": ("已出苗但未达到申报作物的冠层（NDVI上四分位 {p75:.2f} < {min:.2f}），请核查是否受灾或长势差",
                           "emerged in time but never reached the crop's canopy (NDVI p75 "
                           "{p75:.2f} < {min:.2f}): check for damage or poor growth"),
    "NO_EMERGENCE": ("出苗期未观测到出苗", "no emergence seen in the emergence window"),
    "LATE_EMERGENCE": ("出苗偏晚（{date}）", "late emergence ({date})"),
    "NEAR_THRESHOLD": ("{what} {value:.2f} 接近判定阈值 {threshold:.2f}，需人工复核",
                       "{what} {value:.2f} is too close to the threshold {threshold:.2f} to "
                       "decide: review"),
    "NO_SEEDBED": ("播种期有晴空观测但未见裸土苗床（最低NDVI {ndvi:.2f}）：杂草、草地或已有作物，需复核",
                   "the sowing window was seen but never bare (lowest NDVI {ndvi:.2f}): weeds, "
                   "grass or a crop already there — review"),
    "NO_HARVEST": ("收获期内未降至收获后茬地水平（最低NDVI {ndvi:.2f}），未见收获：多年生植被或其他作物，需复核",
                   "never back near stubble in the harvest window (lowest NDVI {ndvi:.2f}): no "
                   "harvest seen — a perennial or another crop, review"),
    "CANOPY_LOST": ("{date} 冠层已退至裸土（早于收获期）：覆盖作物翻耕、提前收获或受灾，需复核",
                    "canopy back to bare soil on {date}, before the harvest window: a cover "
                    "crop ploughed in, an earlier harvest, or damage — review"),
    "NO_SEASONAL_RISE": ("冠层仅比季内最低值高 {rise:.2f}（作物至少 {min:.2f}）：草地或多年生植被，需复核",
                         "the canopy rises only {rise:.2f} above the season's lowest look (a crop "
                         "rises at least {min:.2f}): grass or a perennial — review"),
    "PERMANENT_VEGETATION": ("既无裸土苗床/返青上升（或出苗晚数月），也无收获：草地、多年生植被或林地，非申报作物",
                             "neither a bare seedbed (or a rise from the winter, or only months "
                             "late) nor a harvest: a meadow, a perennial or woodland, not the "
                             "declared crop"),
    "REGROWTH": ("{date} 冠层回落后再次生长（收获期之前）：刈割草地或覆盖作物后另种作物，需复核",
                 "the canopy fell on {date}, before the harvest window, and grew again: a mown "
                 "meadow, or another crop after a cover crop — review"),
    "CROP_REPLACED": ("{date} 冠层已退至裸土后又重新生长：一季作物之后另种作物（如覆盖作物翻耕后种主作物），非申报作物本季",
                      "canopy back to bare soil on {date}, then a new growth: one crop followed "
                      "another (e.g. a cover crop ploughed in, then the main crop), not the "
                      "declared crop's season"),
    "SOWN_IN_PEAK": ("{date} 峰值期内仍为裸土，冠层出现在其后：为之后播种的作物，非申报作物",
                     "bare soil on {date} inside the peak window, the canopy only after it: a crop "
                     "sown later, not the declared one"),
    "SOWING_UNOBSERVED": ("播种期（{start} 至 {end}）无晴空观测：播种证据缺失，依其他时期判定",
                          "no clear look in the sowing window ({start} to {end}): sowing not "
                          "observed, judged on the windows that were"),
    "HARVEST_UNOBSERVED": ("收获期无晴空观测（或在影像期之外）", "no clear look in the harvest "
                           "window (or it lies outside the imagery)"),
    "CROP_MODEL_MISMATCH": ("作物模型判为 {crop}（申报作物概率仅 {p:.0%}）",
                            "the crop model sees {crop} here (declared crop only {p:.0%} likely)"),
    "CROP_MODEL_DOUBT": ("作物模型对申报作物存疑（概率 {p:.0%}，最可能为 {crop}），需复核",
                         "the crop model doubts the declared crop ({p:.0%} likely; most likely "
                         "{crop}): review"),
    "CROP_MODEL_CONFIRMS": ("作物模型确认申报作物（概率 {p:.0%}）",
                            "the crop model confirms the declared crop ({p:.0%} likely)"),
    "CROP_MODEL_UNAVAILABLE": ("未使用作物模型：{why_zh}", "crop model not used: {why_en}"),
    "SMALL_PARCEL": ("地块过小（仅 {n:.1f} 个像元当量），遥感结果仅供参考",
                     "parcel too small to judge reliably ({n:.1f} pixel-equivalents measured)"),
    "FEW_CLEAR_OBS": ("季内晴空观测仅 {n} 次", "only {n} clear observations in the season"),
    "NO_PEAK_OBS": ("峰值期无晴空观测", "no clear observation in the peak window"),
    "NO_PIXELS": ("地块不在影像范围内或无可用像元", "parcel outside the imagery or without pixels"),
    "SOURCE_NO_DATA": ("影像服务未返回该地块的统计：{why}",
                       "the imagery service returned no statistics for this parcel: {why}"),
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
    "NO_PRE_EVENT_CANOPY": ("灾前NDVI {ndvi:.2f} 高出裸土（{soil:.2f}）不足 {min:.2f}：无可比较的作物冠层",
                            "NDVI {ndvi:.2f} before the event is less than {min:.2f} above bare "
                            "soil ({soil:.2f}): no canopy to lose"),
    "FAR_NEIGHBOURS": ("以最近的 {n} 块健康同类地块为对照（最远 {km:.1f} 公里）",
                       "baseline from the {n} nearest healthy same-crop parcels (up to {km:.1f} km "
                       "away)"),
    "OWN_PAST_SEASONS": ("以本地块往年同期（{years} 年）的长势变化为对照",
                         "baseline from the parcel's own past seasons over the same calendar "
                         "window ({years} year(s))"),
    "NO_BASELINE": ("无可用对照：无健康同类地块，序列也无往年同期观测",
                    "no baseline: no healthy same-crop parcel and no past season in the series"),
    "NO_COMMON_CLEAR_DATE": ("灾后晴空日期上无足够的健康同类地块观测",
                             "no post-event date on which both the parcel and enough healthy "
                             "same-crop parcels were seen clear"),
    "FOOTPRINT_EDGE": ("地块仅 {share:.0%} 在灾害范围内（不足 {min:.0%}）：边缘地块，不按受灾估损，也不作健康对照",
                       "only {share:.0%} of the parcel lies inside the event footprint (under "
                       "{min:.0%}): an edge parcel, neither assessed as hit nor used as a healthy "
                       "neighbour"),
    "SURVEY_REQUIRED": ("损失率区间 {low:.0%}–{high:.0%} 跨越{level_zh}，需现场查勘定损；所列赔款为按点估计的暂估值",
                        "loss range {low:.0%}–{high:.0%} straddles the {level_en}: field survey "
                        "needed; the indemnity shown is provisional (from the point estimate)"),
    "SURVEY_EDGE": ("边缘地块损失率可能达 {high:.0%}（起赔点 {threshold:.0%}），需现场查勘；所列赔款为暂估值",
                    "edge parcel whose loss may reach {high:.0%} (payout threshold "
                    "{threshold:.0%}): field survey needed; the indemnity shown is provisional"),
    "UNDERWRITING_REJECTED": ("承保核验未通过（{codes}）：赔付前请核实地块是否种植申报作物",
                              "underwriting rejected this parcel ({codes}): check that the "
                              "declared crop was there before paying"),
    # overlap / duplicate insurance, monitoring units (parcels/overlap.py, parcels/units.py)
    "OVERLAP": ("与地块 {other}（来源：{source}）重叠 {area_mu:.2f} 亩，占本地块 {share:.0%}",
                "overlaps parcel {other} ({source}) by {area_mu:.2f} mu, {share:.0%} of this parcel"),
    "DUPLICATE_PARCEL": ("与地块 {other}（来源：{source}）图形重复，疑似重复投保",
                         "same land as parcel {other} ({source}): possible duplicate insurance"),
    "POOLED_UNIT": ("地块过小，与同户同作物相邻地块合并为监测单元 {unit_id}（{n} 块）判定",
                    ("too small alone: judged in monitoring unit {unit_id} pooled from {n} "
                     "adjacent parcels of the same household and crop")),
    # parcel reading and validation (parcels/io.py, parcels/validate.py)
    "EMPTY_GEOMETRY": ("地块无图形（空或缺失）", "no geometry (empty or missing)"),
    "GEOMETRY_UNREADABLE": ("图形无法读取：{detail}", "geometry cannot be read: {detail}"),
    "NOT_POLYGON": ("图形为 {kind}，不是面", "geometry is a {kind}, not a polygon"),
    "LINE_TO_POLYGON": ("闭合线已转为面", "closed line turned into a polygon"),
    "RING_NOT_CLOSED": ("边界环未闭合，已补首点闭合", "ring not closed: closed it by repeating its first vertex"),
    "TOO_FEW_VERTICES": ("边界只有 {n} 个不同顶点（至少需要 3 个）",
                         "boundary has only {n} distinct vertices (at least 3 needed)"),
    "DUPLICATE_VERTICES": ("已删除 {n} 个重复顶点", "removed {n} repeated vertices"),
    "Z_DROPPED": ("已去除高程/M值，仅用平面坐标", "dropped Z/M values: only plane coordinates are used"),
    "SELF_INTERSECTION": ("图形自相交或环无效（{detail}），已用 make_valid 修复为 {parts} 块、{area_mu:.2f} 亩，请核对",
                          "self-intersection or invalid ring ({detail}): repaired with make_valid into "
                          "{parts} part(s), {area_mu:.2f} mu (please check)"),
    "REPAIR_FAILED": ("图形无效（{detail}），无法修复", "invalid geometry ({detail}) could not be repaired"),
    "SLIVER_PARTS_REMOVED": ("已删除 {n} 个碎片（共 {area_m2:.1f} 平方米）",
                             "removed {n} sliver part(s) ({area_m2:.1f} m² in total)"),
    "SLIVER": ("地块为狭长碎片（平均宽度 {width:.1f} 米）", "parcel is a sliver (mean width {width:.1f} m)"),
    "MULTIPART": ("地块由 {n} 块组成", "parcel has {n} separate parts"),
    "HOLES": ("地块内有 {n} 个孔洞（共 {area_mu:.2f} 亩），已从面积中扣除",
              "parcel has {n} hole(s) ({area_mu:.2f} mu), excluded from its area"),
    "COORDS_SWAPPED": ("经纬度顺序颠倒（纬度在前），已交换", "latitude/longitude were swapped: swapped back"),
    "COORDS_NOT_DEGREES": ("坐标 {x:.1f}, {y:.1f} 超出经纬度范围（疑为投影坐标），请用 --crs 指定坐标系",
                           "coordinates {x:.1f}, {y:.1f} are outside degree ranges (projected metres?): "
                           "give the right CRS with --crs"),
    "CRS_CONVERTED": ("坐标已由 {source} 转换为 WGS84", "coordinates converted from {source} to WGS84"),
    "AREA_TOO_SMALL": ("面积 {area_mu:.3f} 亩小于 {min_mu} 亩，疑为误绘",
                       "area {area_mu:.3f} mu is below {min_mu} mu: probably a digitising slip"),
    "AREA_TOO_LARGE": ("面积 {area_mu:.0f} 亩大于 {max_mu} 亩，不像单个地块（坐标系是否有误？）",
                       "area {area_mu:.0f} mu is above {max_mu} mu: not a single field (wrong CRS?)"),
    "AREA_MISMATCH": ("图形面积 {measured:.2f} 亩与申报 {declared:.2f} 亩相差 {diff:.0%}（容差 {tol:.0%}）",
                      "measured parcel area {measured:.2f} mu differs from the declared "
                      "{declared:.2f} mu by {diff:.0%} (tolerance {tol:.0%})"),
    "MISSING_ID": ("缺少地块编号", "parcel_id is empty"),
    "DUPLICATE_ID": ("地块编号 {parcel_id} 与第 {first} 行重复", "parcel_id {parcel_id} already used in row {first}"),
    "MISSING_ATTRIBUTE": ("缺少必填项：{column}", "required attribute missing: {column}"),
    "DECLARED_AREA_INVALID": ("申报面积 {value} 不是正数", "declared_area_mu {value} is not a positive number"),
    "CROP_UNRECOGNISED": ("作物“{crop}”不是已知作物代码，按原值保留",
                          "crop '{crop}' is not a known crop code (kept as given)"),
    "ATTRIBUTES_VARY": ("同一地块各顶点行的 {columns} 不一致，取第一行的值",
                        "this parcel's vertex rows disagree on {columns}: the first row's value is used"),
    "COLUMN_NAME_TRUNCATED": ("Shapefile 的 DBF 列名最多 10 字节，列 {source} 按截断的 {column} 读取{alt_zh}，请核对",
                              "the Shapefile's DBF keeps 10-byte column names: column {source} read "
                              "as {column}, cut to fit{alt_en} (please check)"),
    "ATTRIBUTE_ABSENT": ("文件中没有 {columns}：已核查图形、面积和坐标系，承保验标和定损需补充这些信息",
                         "the file has no {columns}: geometry, area and CRS checked, but underwriting "
                         "and loss assessment need them"),
    "FIELD_TOO_LONG": ("字段 {column} 长 {n} 个字符，超过上限 {max} 个字符，请缩短或删除该列",
                       "field {column} is {n} characters long, above the limit of {max}: shorten "
                       "it or drop the column"),
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
