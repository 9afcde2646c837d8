/* agri_3s adjuster map (see page.py), part 4: what a click shows — the popup with the
   parcel, its verdict and claim side by side, the NDVI chart of its clear looks, photos. */
(function () {
  'use strict';
  var A = window.agri3sMap, App = A.App, el = A.el, svgEl = A.svgEl, isoDay = A.isoDay;

  function fmt(v, digits, unit) {
    if (v === null || v === undefined || isNaN(v)) return null;
    return v.toLocaleString(undefined, {minimumFractionDigits: digits, maximumFractionDigits: digits}) + (unit || '');
  }
  function pct(v) { return v === null ? null : Math.round(v * 100) + '%'; }

  App.prototype.rows = function (table, rows) {
    rows.forEach(function (r) {
      if (r[1] === null || r[1] === undefined || r[1] === '') return;
      var tr = el('tr', r[2] || '');
      tr.appendChild(el('th', '', r[0]));
      var td = el('td');
      if (r[1] instanceof Node) td.appendChild(r[1]); else td.textContent = r[1];
      tr.appendChild(td);
      table.appendChild(tr);
    });
    return table;
  };

  App.prototype.swatch = function (color, text) {
    var s = el('span', 'a3val');
    var i = el('i');
    i.style.background = color;
    s.appendChild(i);
    s.appendChild(el('b', '', text));
    return s;
  };

  App.prototype.reasonList = function (codes, text) {
    var items = codes ? codes.split(';').filter(Boolean) : [];
    var texts = text ? text.split(/；|; /).map(function (x) { return x.trim(); }).filter(Boolean) : [];
    if (texts.length && (!items.length || texts.length === items.length)) items = texts;
    else if (text) items = [text];
    if (!items.length) return null;
    var ul = el('ul', 'a3reasons');
    items.forEach(function (t) { ul.appendChild(el('li', '', t)); });
    return ul;
  };

  App.prototype.popup = function (i) {
    var app = this, P = this.P, V = this.V, C = this.C, T = this.T;
    var box = el('div', 'a3pop');
    box.setAttribute('data-parcel', P.parcel_id(i) || '');
    var head = el('div', 'a3head');
    head.appendChild(el('span', 'a3k', T.parcel + ' '));
    head.appendChild(el('b', 'a3pid', P.parcel_id(i)));
    if (P.policy_id(i)) {
      head.appendChild(el('span', 'a3k', ' · ' + T.policy + ' '));
      head.appendChild(el('b', 'a3pol', P.policy_id(i)));
    }
    box.appendChild(head);
    if (V && C && V.status(i) !== null && C.status(i) !== null) {
      // verdict and claim side by side under the ids, also where the two columns stack (phones)
      var sum = el('div', 'a3sum'), cs0 = C.status(i), rate0 = C.loss_rate(i);
      sum.appendChild(el('span', 'a3k', T.underwriting + ' '));
      sum.appendChild(this.swatch(this.verdictColor(i), this.label('status', V.status(i))));
      sum.appendChild(el('span', 'a3k', ' · ' + T.claim + ' '));
      sum.appendChild(this.swatch(this.claimColor(i), this.label('claim_status', cs0) +
        (!this.LB.colors.claim_status[cs0] && rate0 !== null ? ' ' + pct(rate0) : '')));
      box.appendChild(sum);
    }
    var crop = P.crop(i);
    var mu = ' ' + T.mu;
    box.appendChild(this.rows(el('table', 'a3t'), [
      [T.household, P.household_id(i)],
      [T.farmer, P.farmer_name ? P.farmer_name(i) : null],
      [T.id_number, P.farmer_id_number ? P.farmer_id_number(i) : null],
      [T.crop, crop === null ? null : this.label('crop', crop)],
      [T.declared, fmt(P.declared_area_mu(i), 1, mu)]]));
    var flagged = C && C.flag(i) === 1;
    if (flagged) box.appendChild(el('div', 'a3flag', '⚠ ' + T.flag_text));
    var cols = el('div', 'a3cols');
    if (V) {
      var sv = el('section', 'a3side a3verdict');
      sv.appendChild(el('h4', '', T.underwriting));
      var st = V.status(i);
      if (st === null) sv.appendChild(el('div', 'a3note', T.no_result));
      else {
        var measured = fmt(V.measured_area_mu(i), 1, mu);
        if (measured && V.area_ratio(i) !== null) measured += ' (' + pct(V.area_ratio(i)) + ')';
        var peak = fmt(V.peak_ndvi(i), 2);
        if (peak && V.peak_date(i) !== null) peak += ' (' + isoDay(V.peak_date(i)) + ')';
        this.rows(sv.appendChild(el('table', 'a3t')), [
          [T.verdict, this.swatch(this.verdictColor(i), this.label('status', st))],
          [T.planted, pct(V.planted_fraction(i))], [T.measured, measured],
          [T.emergence, isoDay(V.emergence_date(i))], [T.peak, peak],
          [T.clear, fmt(V.clear_observations(i), 0)], [T.confidence, fmt(V.confidence(i), 2)],
          [T.reasons, this.reasonList(V.reasons(i), V.reasons_text(i))]]);
      }
      cols.appendChild(sv);
    }
    if (C) {
      var sc = el('section', 'a3side a3claim');
      sc.appendChild(el('h4', '', T.claim));
      var cs = C.status(i);
      if (cs === null) sc.appendChild(el('div', 'a3note', T.no_result));
      else {
        var rate = pct(C.loss_rate(i));
        if (rate && C.loss_rate_low(i) !== null && C.loss_rate_high(i) !== null) {
          rate += ' [' + pct(C.loss_rate_low(i)) + ', ' + pct(C.loss_rate_high(i)) + ']';
        }
        var graded = !this.LB.colors.claim_status[cs];
        var pay = fmt(C.indemnity_cny(i), 0, ' ' + T.cny);
        if (pay && cs === 'survey') pay += T.provisional;
        var ev = this.label('event', C.event_type(i)) + ' ' + isoDay(C.event_date(i));
        if (C.event_id(i)) ev += ' (' + C.event_id(i) + ')';
        var dates = C.imagery_dates(i);
        this.rows(sc.appendChild(el('table', 'a3t')), [
          [T.status, this.swatch(this.claimColor(i), this.label('claim_status', cs))],
          [T.event, ev],
          [T.loss_rate, graded ? rate : null],
          [T.grade, graded ? this.label('grade', C.loss_grade(i) === null ? 'unknown' : C.loss_grade(i)) : null],
          [T.damaged, fmt(C.damaged_area_mu(i), 1, mu)],
          [T.indemnity, pay],
          [T.survey, cs === 'survey' ? T.survey_yes : T.survey_no],
          [T.baseline, C.baseline_method(i) === null ? null : this.label('baseline', C.baseline_method(i))],
          [T.imagery_dates, dates ? dates.split(';').join(', ') : null],
          [T.reasons, this.reasonList(C.reasons(i), C.reasons_text(i))]]);
      }
      cols.appendChild(sc);
    }
    if (cols.childNodes.length) box.appendChild(cols);
    if (this.images.length) {
      var seen = {};
      this.images.forEach(function (im) {
        seen[im.info.date] = 1;
        if (im.info.before) seen[im.info.before] = 1;
      });
      box.appendChild(this.rows(el('table', 'a3t'), [[T.map_imagery, Object.keys(seen).sort().join(', ')]]));
    }
    var chart = this.chart(i);
    if (chart) box.appendChild(chart);
    var photos = this.photosByParcel[P.parcel_id(i)] || [];
    if (photos.length) {
      var ph = el('div', 'a3photos');
      ph.appendChild(el('b', '', T.photos));
      photos.forEach(function (p) { ph.appendChild(app.photoItem(p)); });
      box.appendChild(ph);
    }
    return box;
  };

  App.prototype.photoItem = function (p) {
    var d = el('div', 'a3photo');
    if (p.src) {
      var img = el('img');
      img.setAttribute('src', p.src);
      img.setAttribute('alt', p.id || '');
      img.setAttribute('loading', 'lazy');
      d.appendChild(img);
    }
    d.appendChild(el('div', 'a3note', [p.id, p.t].filter(Boolean).join(' · ')));
    return d;
  };

  App.prototype.photoPopup = function (p) {
    var T = this.T, box = el('div', 'a3pop');
    this.rows(box.appendChild(el('table', 'a3t')), [[T.photo, p.id], [T.parcel, p.parcel], [T.taken, p.t]]);
    box.appendChild(this.photoItem(p));
    return box;
  };

  /* The parcel's clear looks as an SVG chart (NDVI 0–1), the event and the imagery dates. */
  App.prototype.chart = function (i) {
    var S = this.series;
    if (!S || !S.days.length) return null;
    var T = S.days.length, w = 300, hgt = 104, left = 24, right = 8, top = 16, bottom = 16;
    var days = S.days, lo = days[0], hi = days[T - 1];
    var ev = this.C && this.C.status(i) !== null ? this.C.event_date(i) : null;
    if (ev !== null) { lo = Math.min(lo, ev); hi = Math.max(hi, ev); }
    var span = Math.max(hi - lo, 1);
    function x(d) { return left + (d - lo) / span * (w - left - right); }
    function y(v) { return top + (1 - Math.max(0, Math.min(1, v))) * (hgt - top - bottom); }
    var svg = svgEl('svg', {width: w, height: hgt, viewBox: '0 0 ' + w + ' ' + hgt, 'class': 'a3chart'});
    svg.appendChild(svgEl('text', {x: left, y: 10, 'class': 'a3ct'}, this.T.chart));
    svg.appendChild(svgEl('path', {d: 'M' + left + ' ' + top + 'V' + (hgt - bottom) + 'H' + (w - right), 'class': 'a3axis'}));
    svg.appendChild(svgEl('path', {d: 'M' + left + ' ' + y(0.5) + 'H' + (w - right), 'class': 'a3grid'}));
    [1, 0.5, 0].forEach(function (v) {
      svg.appendChild(svgEl('text', {x: left - 3, y: y(v) + 3, 'class': 'a3e'}, String(v)));
    });
    svg.appendChild(svgEl('text', {x: left, y: hgt - 3}, isoDay(lo)));
    svg.appendChild(svgEl('text', {x: w - right, y: hgt - 3, 'class': 'a3e'}, isoDay(hi)));
    this.images.forEach(function (im) {
      [im.info.date, im.info.before].forEach(function (d) {
        if (!d) return;
        var day = Date.parse(d) / 86400000;
        if (day >= lo && day <= hi) {
          var p = svgEl('path', {d: 'M' + x(day) + ' ' + top + 'V' + (hgt - bottom), 'class': 'a3img'});
          p.appendChild(svgEl('title', {}, d));
          svg.appendChild(p);
        }
      });
    });
    if (ev !== null) {
      var e = svgEl('path', {d: 'M' + x(ev) + ' ' + top + 'V' + (hgt - bottom), 'class': 'a3ev'});
      e.appendChild(svgEl('title', {}, this.T.chart_event + ' ' + isoDay(ev)));
      svg.appendChild(e);
    }
    var pts = [];
    for (var t = 0; t < T; t++) {
      var q = S.m[i * T + t];
      if (q !== 255) pts.push([x(days[t]), y(q / 250 * 1.2 - 0.2)]);
    }
    if (pts.length > 1) {
      svg.appendChild(svgEl('polyline', {points: pts.map(function (p) {
        return p[0].toFixed(1) + ',' + p[1].toFixed(1);
      }).join(' '), 'class': 'a3line'}));
    }
    pts.forEach(function (p) { svg.appendChild(svgEl('circle', {cx: p[0].toFixed(1), cy: p[1].toFixed(1), r: 2, 'class': 'a3dot'})); });
    if (!pts.length) {
      svg.appendChild(svgEl('text', {x: (left + w) / 2, y: hgt / 2, 'text-anchor': 'middle'}, this.T.no_clear));
    }
    return svg;
  };

  /* The index of a split map: one rectangle per part, linking to its file. */
})();
