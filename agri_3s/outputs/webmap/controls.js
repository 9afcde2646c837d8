/* agri_3s adjuster map (see page.py), part 3: the controls — title and notes, legend, search by
   parcel / policy / household id, "where am I" (browser geolocation, works offline). */
/* global L */
(function () {
  'use strict';
  var A = window.agri3sMap, App = A.App, el = A.el, svgEl = A.svgEl;

  App.prototype.titleControl = function () {
    var app = this, h = this.h;
    var C = L.Control.extend({
      options: {position: 'topright'},
      onAdd: function () {
        var box = el('div', 'a3box a3title');
        box.appendChild(el('div', 'a3titletext', h.title));
        if (h.part) {
          var p = el('div', 'a3note', app.t('part_of', {i: h.part.i, n: h.part.n, name: h.part.name}));
          if (h.part.index) {
            var a = el('a', '', ' ↗ ' + app.t('index_title'));
            a.setAttribute('href', h.part.index);
            p.appendChild(a);
          }
          box.appendChild(p);
        }
        (h.notes || []).forEach(function (n) { box.appendChild(el('div', 'a3note a3warn', n)); });
        L.DomEvent.disableClickPropagation(box);
        app.titleBox = box;
        return box;
      }
    });
    return new C();
  };

  App.prototype.legendControl = function () {
    var app = this;
    var C = L.Control.extend({
      options: {position: 'bottomright'},
      onAdd: function () {
        var box = el('div', 'a3box a3legend');
        var toggle = el('button', 'a3legendtoggle', '☰');
        toggle.type = 'button';
        toggle.title = app.t('imagery_legend');
        var body = el('div', 'a3legendbody');
        toggle.onclick = function () { body.hidden = !body.hidden; };
        box.appendChild(toggle);
        box.appendChild(body);
        if (app.map.getSize().y < 480) body.hidden = true;
        app.legendBody = body;
        L.DomEvent.disableClickPropagation(box);
        L.DomEvent.disableScrollPropagation(box);
        return box;
      }
    });
    return new C();
  };

  App.prototype.updateLegend = function () {
    var app = this, map = this.map, body = this.legendBody, LB = this.LB;
    if (!body) return;
    body.textContent = '';
    function section(title, items) {
      var s = el('div', 'a3legendsec');
      s.appendChild(el('b', '', title));
      items.forEach(function (it) {
        var row = el('div', 'a3legendrow');
        var sw = el('i', it[2] || '');
        if (it[0].indexOf('gradient') >= 0) sw.style.background = it[0]; else sw.style.background = it[0];
        if (it[2] === 'a3flagsw') { sw.style.background = 'transparent'; sw.style.borderColor = it[0]; }
        row.appendChild(sw);
        row.appendChild(document.createTextNode(it[1]));
        s.appendChild(row);
      });
      body.appendChild(s);
    }
    if (this.layers.loss && map.hasLayer(this.layers.loss)) {
      var items = Object.keys(LB.colors.grade).map(function (g) {
        return [LB.colors.grade[g], app.label('grade', g)];
      });
      Object.keys(LB.colors.claim_status).forEach(function (s) {
        items.push([LB.colors.claim_status[s], app.label('claim_status', s)]);
      });
      items.push([LB.colors.none, this.t('no_result')]);
      items.push([LB.colors.flag, this.t('flag'), 'a3flagsw']);
      section(this.t('loss_layer'), items);
    }
    if (this.layers.verdict && map.hasLayer(this.layers.verdict)) {
      section(this.t('verdict_layer'), Object.keys(LB.colors.status).map(function (s) {
        return [LB.colors.status[s], app.label('status', s)];
      }).concat([[LB.colors.none, this.t('no_result')]]));
    }
    this.images.forEach(function (im) {
      if (!map.hasLayer(im.layer) || im.info.legend === 'rgb') return;
      var ramp = im.info.legend === 'change' ? 'linear-gradient(to right,#b2182b,#ef8a62,#f7f7f7,#67a9cf,#2166ac)'
        : 'linear-gradient(to right,#8c510a,#d8b365,#f6e8c3,#a6d96a,#1a9641)';
      section(im.info.name, [[ramp, im.info.vmin + ' – ' + im.info.vmax, 'a3ramp']]);
    });
    if (this.layers.photo && map.hasLayer(this.layers.photo)) {
      section(this.t('photo_layer'), [[LB.colors.photo, this.t('photo')]]);
    }
  };

  App.prototype.searchControl = function () {
    var app = this;
    var C = L.Control.extend({
      options: {position: 'topleft'},
      onAdd: function () {
        var box = el('form', 'a3box a3search');
        var input = el('input');
        input.type = 'search';
        input.placeholder = app.t('search');
        input.setAttribute('aria-label', app.t('search'));
        var go = el('button', '', app.t('search_go'));
        go.type = 'submit';
        var list = el('div', 'a3results');
        box.appendChild(input); box.appendChild(go); box.appendChild(list);
        box.onsubmit = function (e) { e.preventDefault(); app.search(input.value, list); };
        L.DomEvent.disableClickPropagation(box);
        L.DomEvent.disableScrollPropagation(box);
        return box;
      }
    });
    return new C();
  };

  App.prototype.search = function (q, list) {
    var app = this, n = this.G.n, P = this.P;
    q = String(q || '').trim().toLowerCase();
    list.textContent = '';
    if (!q) return;
    if (!this.ids) {
      this.ids = new Map();
      var add = function (key, i) {
        if (key === null || key === undefined) return;
        key = String(key).toLowerCase();
        var a = app.ids.get(key);
        if (a) { if (a[a.length - 1] !== i) a.push(i); } else app.ids.set(key, [i]);
      };
      for (var i = 0; i < n; i++) { add(P.parcel_id(i), i); add(P.policy_id(i), i); add(P.household_id(i), i); }
    }
    var hits = this.ids.get(q) || [];
    if (!hits.length) {
      this.ids.forEach(function (v, k) { if (hits.length < 50 && k.indexOf(q) >= 0) hits = hits.concat(v); });
      hits = hits.slice(0, 50);
    }
    if (!hits.length) { this.toast(this.t('search_none', {q: q})); return; }
    if (hits.length === 1) { this.select(hits[0], null, true); return; }
    var G = this.G, b = [Infinity, Infinity, -Infinity, -Infinity];
    hits.forEach(function (i) {
      b[0] = Math.min(b[0], G.box[4 * i]); b[1] = Math.min(b[1], G.box[4 * i + 1]);
      b[2] = Math.max(b[2], G.box[4 * i + 2]); b[3] = Math.max(b[3], G.box[4 * i + 3]);
      var item = el('a', 'a3result', P.parcel_id(i) + (P.policy_id(i) ? ' · ' + P.policy_id(i) : ''));
      item.href = '#';
      item.onclick = function (e) { e.preventDefault(); app.select(i, null, true); };
      list.appendChild(item);
    });
    list.insertBefore(el('div', 'a3note', this.t('search_many', {n: hits.length})), list.firstChild);
    if (b[0] <= b[2]) this.map.fitBounds(L.latLngBounds(this.toLatLng(b[0], b[3]), this.toLatLng(b[2], b[1])));
  };


  App.prototype.locateControl = function () {
    var app = this;
    var C = L.Control.extend({
      options: {position: 'topleft'},
      onAdd: function () {
        var box = el('div', 'leaflet-bar a3locate');
        var a = el('a');
        var icon = svgEl('svg', {width: 18, height: 18, viewBox: '0 0 18 18', 'class': 'a3locicon'});
        icon.appendChild(svgEl('circle', {cx: 9, cy: 9, r: 5}));
        icon.appendChild(svgEl('path', {d: 'M9 0V5M9 13V18M0 9H5M13 9H18'}));
        a.appendChild(icon);
        a.href = '#'; a.title = app.t('locate'); a.setAttribute('role', 'button');
        a.setAttribute('aria-label', app.t('locate'));
        a.onclick = function (e) { e.preventDefault(); app.locate(); };
        box.appendChild(a);
        L.DomEvent.disableClickPropagation(box);
        return box;
      }
    });
    return new C();
  };

  App.prototype.locate = function () {
    var app = this, map = this.map;
    this.toast(this.t('locating'));
    map.once('locationfound', function (e) {
      if (app.here) app.here.remove();
      var svg = L.svg({pane: 'a3select'});
      app.here = L.layerGroup([
        L.circle(e.latlng, {radius: e.accuracy, color: '#1565c0', weight: 1, fillOpacity: 0.1,
          pane: 'a3select', interactive: false, renderer: svg}),
        L.circleMarker(e.latlng, {radius: 7, color: '#fff', weight: 2, fillColor: '#1565c0',
          fillOpacity: 1, pane: 'a3select', interactive: false, className: 'a3here',
          renderer: svg})]).addTo(map);
      map.setView(e.latlng, Math.max(map.getZoom(), 16));
      var i = app.hit(e.latlng, 0);
      app.toast(app.t('located', {m: Math.round(e.accuracy)}));
      if (i !== null) {
        app.toast(app.t('located_in', {id: app.P.parcel_id(i)}));
        app.select(i, e.latlng, false);
      }
    });
    map.once('locationerror', function (e) { app.toast(app.t('locate_failed', {msg: e.message})); });
    map.locate({setView: false, enableHighAccuracy: true, timeout: 20000, maximumAge: 30000});
  };
})();
