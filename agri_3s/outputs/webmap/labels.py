"""Every word the adjuster map shows, in Chinese and English, and the colours of its codes.

The page receives the labels of one language (:func:`page_labels`); codes it does not know are
shown as they are. Colours: verdicts by status, claims by loss grade within the event and by
status outside it (``not_affected``, ``no_data``, ``invalid`` are not loss grades).
"""

from __future__ import annotations

LANGS = ("zh", "en")

STATUS_COLORS = {"green": "#2e7d32", "yellow": "#f9a825", "red": "#c62828",
                 "no_data": "#9e9e9e", "invalid": "#6a1b9a"}
#: Loss grades of claims inside the event; ``unknown`` is a claim without a loss estimate.
GRADE_COLORS = {"none": "#a5d6a7", "light": "#fff176", "moderate": "#ffa726",
                "severe": "#e64a19", "total": "#7f0000", "unknown": "#8d6e63"}
#: Claims not graded: outside the event (not_affected) or not assessed.
CLAIM_STATUS_COLORS = {"not_affected": "#e0e0e0", "no_data": "#9e9e9e", "invalid": "#6a1b9a"}
NO_RESULT_COLOR = "#bdbdbd"
PHOTO_COLOR = "#0d47a1"
FLAG_COLOR = "#d500f9"  # outline of a claim on a parcel underwriting rejected
NDVI_RAMP = ("#8c510a", "#d8b365", "#f6e8c3", "#a6d96a", "#1a9641")  # vmin → vmax
CHANGE_RAMP = ("#b2182b", "#ef8a62", "#f7f7f7", "#67a9cf", "#2166ac")  # loss → gain

STATUS_LABELS = {"green": ("通过", "pass"), "yellow": ("待核", "review"), "red": ("不通过", "fail"),
                 "no_data": ("无数据", "no data"), "invalid": ("无效", "invalid")}
GRADE_LABELS = {"none": ("无损（<10%）", "none (<10%)"), "light": ("轻度（10–30%）", "light (10–30%)"),
                "moderate": ("中度（30–50%）", "moderate (30–50%)"),
                "severe": ("重度（50% 至全损标准）", "severe (50% to total)"),
                "total": ("绝收（≥全损标准）", "total loss (≥ total-loss level)"),
                "unknown": ("无法估损", "not estimated")}
CLAIM_STATUS_LABELS = {"estimated": ("已估损", "estimated"),
                       "below_threshold": ("未达起赔点", "below payout threshold"),
                       "survey": ("需现场查勘", "field survey needed"),
                       "not_affected": ("未受灾", "not affected"),
                       "no_data": ("无数据", "no data"), "invalid": ("无效", "invalid")}
EVENT_LABELS = {"hail": ("冰雹", "hail"), "flood": ("洪涝", "flood"), "drought": ("干旱", "drought"),
                "lodging": ("倒伏", "lodging"), "freeze": ("冻害", "freeze")}
CROP_LABELS = {"winter_wheat": ("冬小麦", "winter wheat"), "summer_maize": ("夏玉米", "summer maize"),
               "spring_maize": ("春玉米", "spring maize"), "maize": ("玉米", "maize"),
               "rice_single": ("一季稻", "single rice"), "rice_early": ("早稻", "early rice"),
               "rice_late": ("晚稻", "late rice"), "soybean": ("大豆", "soybean"),
               "cotton": ("棉花", "cotton"), "rapeseed": ("油菜", "rapeseed")}
BASELINE_LABELS = {
    "neighbours+own_pre": ("周边健康地块 + 本地块灾前", "healthy neighbours + own pre-event"),
    "far_neighbours+own_pre": ("较远健康地块 + 本地块灾前", "distant neighbours + own pre-event"),
    "own_past+own_pre": ("本地块往年同期 + 灾前", "own past season + own pre-event")}
#: Imagery layers: (zh, en) name templates, filled with the date.
IMAGERY_LABELS = {
    "true_before": ("真彩色影像 灾前 {date}", "True colour before {date}"),
    "true_after": ("真彩色影像 灾后 {date}", "True colour after {date}"),
    "false_before": ("假彩色影像（近红外）灾前 {date}", "False colour (NIR) before {date}"),
    "false_after": ("假彩色影像（近红外）灾后 {date}", "False colour (NIR) after {date}"),
    "true_season": ("真彩色影像 {date}", "True colour {date}"),
    "false_season": ("假彩色影像（近红外）{date}", "False colour (NIR) {date}"),
    "ndvi_change": ("NDVI 变化 {before} → {date}", "NDVI change {before} → {date}"),
    "raster": ("{name}", "{name}"),
}
TEXT = {
    "verdict_layer": ("承保核验", "Underwriting verdict"), "loss_layer": ("损失等级", "Loss grade"),
    "photo_layer": ("现场照片", "Field photos"), "osm": ("OpenStreetMap 地图", "OpenStreetMap"),
    "esri": ("Esri 卫星影像", "Esri World Imagery"), "plain": ("空白底图", "Plain background"),
    "parcel": ("地块", "Parcel"), "policy": ("保单", "Policy"), "household": ("农户编号", "Household"),
    "crop": ("作物", "Crop"), "declared": ("申报面积", "Declared area"), "farmer": ("农户", "Farmer"),
    "id_number": ("身份证号", "ID number"), "verdict": ("核验结论", "Verdict"),
    "underwriting": ("承保核验", "Underwriting"), "claim": ("查勘定损", "Claim"),
    "planted": ("种植比例", "Planted fraction"), "measured": ("实测面积", "Measured area"),
    "emergence": ("出苗日期", "Emergence"), "peak": ("NDVI 峰值", "Peak NDVI"),
    "clear": ("晴空观测", "Clear looks"), "confidence": ("置信度", "Confidence"),
    "reasons": ("原因", "Reasons"), "event": ("灾害", "Event"), "loss_rate": ("损失率", "Loss rate"),
    "parcel_loss": ("全地块损失", "Parcel loss"),
    "damaged": ("受损面积", "Damaged area"), "grade": ("损失等级", "Loss grade"),
    "indemnity": ("估算赔款", "Est. indemnity"), "provisional": ("（暂估）", " (provisional)"),
    "status": ("状态", "Status"), "survey": ("现场查勘", "Field survey"),
    "survey_yes": ("需要（影像无法判定是否达到赔付标准）", "needed (imagery cannot tell the payout side)"),
    "survey_no": ("不需要", "not needed"),
    "baseline": ("对照方法", "Baseline"), "mu": ("亩", "mu"), "cny": ("元", "CNY"),
    "imagery_dates": ("所用影像日期", "Imagery used"), "map_imagery": ("地图影像", "Map imagery"),
    "no_result": ("无结果", "no result"), "no_clear": ("无晴空观测", "no clear observations"),
    "photo": ("照片", "Photo"), "taken": ("拍摄时间", "Taken at"), "photos": ("现场照片", "Photos"),
    "not_drawn": ("{n} 个地块无图形，未显示", "{n} parcel(s) without geometry not shown"),
    "title_verdict": ("承保核验地图", "Underwriting verification map"),
    "title_loss": ("查勘定损地图", "Loss assessment map"), "title": ("农险遥感地图", "Crop insurance map"),
    "flag": ("承保未通过地块的赔案", "Claim on a parcel underwriting rejected"),
    "flag_text": ("承保核验未通过：赔付前请核实", "underwriting rejected this parcel: check before paying"),
    "chart": ("NDVI 时间序列（晴空观测）", "NDVI series (clear looks)"),
    "chart_event": ("灾害日期", "event date"), "chart_image": ("地图影像日期", "map imagery date"),
    "search": ("地块 / 保单 / 农户编号", "parcel / policy / household id"),
    "search_go": ("查找", "Find"), "search_none": ("未找到：{q}", "not found: {q}"),
    "search_many": ("{n} 个地块", "{n} parcels"),
    "locate": ("我的位置", "Where am I"), "locating": ("正在定位…", "locating…"),
    "located": ("您在此处（精度约 {m} 米）", "you are here (within about {m} m)"),
    "located_in": ("您在地块 {id} 内", "you are in parcel {id}"),
    "locate_failed": ("无法定位：{msg}", "cannot locate: {msg}"),
    "offline": ("离线：网络底图不可用，已显示卫星影像", "offline: web base map unavailable, showing the satellite image"),
    "offline_plain": ("离线：网络底图不可用", "offline: web base map unavailable"),
    "old_browser": ("浏览器版本过旧，无法打开此地图（请用 Chrome/Edge 80+、Safari 16.4+ 或 Firefox 113+）",
                    "this browser is too old to open the map (use Chrome/Edge 80+, Safari 16.4+ or Firefox 113+)"),
    "forced": ("注意：强制合并的结果可能不匹配：{why}", "warning: results merged with --force may not belong together: {why}"),
    "part_of": ("第 {i} / {n} 幅（{name}）", "map {i} of {n} ({name})"),
    "index_title": ("分幅索引图", "Map index"), "open_part": ("打开此幅地图", "open this map"),
    "parcels_n": ("{n} 个地块", "{n} parcels"),
    "imagery_legend": ("影像", "Imagery"), "change_legend": ("NDVI 变化", "NDVI change"),
}


def label(table: dict, code: object, lang: str) -> str:
    """The label of ``code`` in ``lang`` (an unknown code is returned as text).

    >>> label(STATUS_LABELS, "red", "en")
    'fail'
    """
    pair = table.get(code) if isinstance(code, str) else None
    return pair[LANGS.index(lang)] if pair else ("" if code is None else str(code))


def text(key: str, lang: str, **values: object) -> str:
    """A UI text in ``lang``, filled with ``values``.

    >>> text("parcels_n", "zh", n=3)
    '3 个地块'
    """
    return TEXT[key][LANGS.index(lang)].format(**values)


def page_labels(lang: str) -> dict:
    """Everything the page's script needs to speak ``lang``: texts, code labels, colours."""
    i = LANGS.index(lang)

    def pick(table: dict) -> dict:
        return {k: v[i] for k, v in table.items()}

    return {"text": pick(TEXT), "status": pick(STATUS_LABELS), "grade": pick(GRADE_LABELS),
            "claim_status": pick(CLAIM_STATUS_LABELS), "event": pick(EVENT_LABELS),
            "crop": pick(CROP_LABELS), "baseline": pick(BASELINE_LABELS),
            "colors": {"status": STATUS_COLORS, "grade": GRADE_COLORS,
                       "claim_status": CLAIM_STATUS_COLORS, "none": NO_RESULT_COLOR,
                       "photo": PHOTO_COLOR, "flag": FLAG_COLOR}}
