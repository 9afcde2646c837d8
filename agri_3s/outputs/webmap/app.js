/* agri_3s adjuster map (see page.py), part 2: the map — parcels drawn on canvas tiles,
   layers, legend, title, search, "where am I", clicks, and the offline fallback to the job's
   imagery when the web base maps do not answer. User text is only ever set with textContent /
   setAttribute: never parsed as markup. */
/* global L */
(function () {
  'use strict';
  var D = window.agri3sData, decodeGeometry = D.decodeGeometry, gridIndex = D.gridIndex,
    distance = D.distance, columns = D.columns, b64bytes = D.b64bytes, gunzip = D.gunzip,
    parse = D.parse;

  function el(tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined && text !== null) e.textContent = text;
    return e;
  }

  function svgEl(tag, attrs, text) {
    var e = document.createElementNS('http://www.w3.org/2000/svg', tag);
    Object.keys(attrs || {}).forEach(function (k) { e.setAttribute(k, attrs[k]); });
    if (text !== undefined) e.textContent = text;
    return e;
  }

  function isoDay(d) { return d === null ? '' : new Date(d * 86400000).toISOString().slice(0, 10); }

  function hexAlpha(hex, a) {
    var n = parseInt(hex.slice(1), 16);
    return 'rgba(' + (n >> 16) + ',' + ((n >> 8) & 255) + ',' + (n & 255) + ',' + a + ')';
  }


  function App(h, root) {
    var self = this;
    this.h = h;
    this.T = h.labels.text;
    this.LB = h.labels;
    this.G = decodeGeometry(h);
    this.query = gridIndex(this.G);
    this.P = columns(h, h.parcel);
    this.V = columns(h, h.verdict);
    this.C = columns(h, h.claim);
    this.series = h.series ? {days: h.series.days, m: h.arr(h.series.m)} : null;
    this.photosByParcel = {};
    (h.photos || []).forEach(function (p) {
      if (p.parcel) (self.photosByParcel[p.parcel] = self.photosByParcel[p.parcel] || []).push(p);
    });
    this.images = (h.imagery || []).map(function (im) {
      var url = URL.createObjectURL(new Blob([h.arr(im.img)], {type: 'image/jpeg'}));
      return {info: im, layer: L.imageOverlay(url, im.bounds, {pane: 'a3imagery', interactive: false,
        alt: im.name, className: 'a3image a3image-' + im.kind})};
    });
    this.map = L.map(root, {preferCanvas: true, zoomControl: false, attributionControl: true,
      minZoom: 2, maxZoom: 20});
    this.map.createPane('a3imagery').style.zIndex = 350;
    this.map.createPane('a3parcels').style.zIndex = 420;
    this.map.createPane('a3select').style.zIndex = 640;
    this.build();
  }

  App.prototype.t = function (key, values) {
    var s = this.T[key] === undefined ? key : this.T[key];
    Object.keys(values || {}).forEach(function (k) { s = s.split('{' + k + '}').join(values[k]); });
    return s;
  };

  App.prototype.label = function (table, code) {
    if (code === null || code === undefined) return '—';
    var t = this.LB[table];
    return t && t[code] !== undefined ? t[code] : String(code).replace(/_/g, ' ');
  };

  App.prototype.verdictColor = function (i) {
    var s = this.V.status(i), c = this.LB.colors;
    return s === null ? c.none : c.status[s] || c.none;
  };

  App.prototype.claimKey = function (i) {
    var s = this.C.status(i);
    if (s === null) return null;
    if (this.LB.colors.claim_status[s]) return 'status:' + s;
    var g = this.C.loss_grade(i);
    return 'grade:' + (g === null ? 'unknown' : g);
  };

  App.prototype.claimColor = function (i) {
    var k = this.claimKey(i), c = this.LB.colors;
    if (k === null) return c.none;
    var p = k.split(':');
    return (p[0] === 'status' ? c.claim_status[p[1]] : c.grade[p[1]]) || c.none;
  };

  /* One canvas-tile layer of the parcels, coloured by colorOf(i). */
  App.prototype.parcelLayer = function (colorOf, flagged) {
    var app = this, G = this.G;
    var Layer = L.GridLayer.extend({
      createTile: function (coords) {
        var size = this.getTileSize(), ratio = window.devicePixelRatio || 1;
        var tile = L.DomUtil.create('canvas', 'leaflet-tile');
        tile.width = size.x * ratio; tile.height = size.y * ratio;
        tile.style.width = size.x + 'px'; tile.style.height = size.y + 'px';
        var ctx = tile.getContext('2d');
        ctx.scale(ratio, ratio);
        var s = Math.pow(2, coords.z), ox = coords.x * size.x, oy = coords.y * size.y;
        var pad = 3 / s, groups = {}, dots = {}, flags = [];
        app.query(ox / s - pad, oy / s - pad, (ox + size.x) / s + pad, (oy + size.y) / s + pad,
          function (i) {
            var col = colorOf(i);
            var w = (G.box[4 * i + 2] - G.box[4 * i]) * s, hh = (G.box[4 * i + 3] - G.box[4 * i + 1]) * s;
            // simplified by zoom: a parcel of a few pixels is drawn as its box
            if (Math.max(w, hh) < 10) (dots[col] = dots[col] || []).push(i);
            else (groups[col] = groups[col] || []).push(i);
            if (flagged && Math.max(w, hh) >= 6 && flagged(i)) flags.push(i);
          });
        function trace(i) {
          for (var r = G.pr[i]; r < G.pr[i + 1]; r++) {
            for (var j = G.rv[r]; j < G.rv[r + 1]; j++) {
              var x = G.X[j] * s - ox, y = G.Y[j] * s - oy;
              if (j === G.rv[r]) ctx.moveTo(x, y); else ctx.lineTo(x, y);
            }
            ctx.closePath();
          }
        }
        Object.keys(groups).sort().forEach(function (col) {
          ctx.beginPath();
          groups[col].forEach(trace);
          ctx.fillStyle = hexAlpha(col, 0.5);
          ctx.fill('nonzero');
          ctx.lineWidth = s > 8192 ? 1.5 : 1;
          ctx.strokeStyle = col;
          ctx.stroke();
        });
        Object.keys(dots).sort().forEach(function (col) {
          ctx.fillStyle = hexAlpha(col, 0.8);
          dots[col].forEach(function (i) {
            var x0 = G.box[4 * i] * s - ox, y0 = G.box[4 * i + 1] * s - oy;
            ctx.fillRect(x0, y0, Math.max(1, (G.box[4 * i + 2] - G.box[4 * i]) * s),
              Math.max(1, (G.box[4 * i + 3] - G.box[4 * i + 1]) * s));
          });
        });
        if (flags.length) {
          ctx.beginPath();
          flags.forEach(trace);
          ctx.setLineDash([4, 3]);
          ctx.lineWidth = 2.5;
          ctx.strokeStyle = app.LB.colors.flag;
          ctx.stroke();
        }
        return tile;
      }
    });
    return new Layer({pane: 'a3parcels', updateWhenZooming: false, keepBuffer: 1});
  };

  App.prototype.build = function () {
    var app = this, h = this.h, map = this.map, T = this.T;
    // base maps: web tiles (WGS84 / web mercator only: GCJ-02 services would shift parcels)
    var osm = L.tileLayer('https://tile.openstreetmap.org/{z}/{x}/{y}.png', {maxZoom: 19,
      attribution: '&copy; OpenStreetMap contributors'});
    var esri = L.tileLayer('https://server.arcgisonline.com/ArcGIS/rest/services/World_Imagery/' +
      'MapServer/tile/{z}/{y}/{x}', {maxZoom: 19, attribution: 'Esri, Maxar, Earthstar Geographics'});
    var plain = L.layerGroup();
    this.web = [osm, esri];
    this.plain = plain;
    var bases = {}, overlays = {};
    bases[T.osm] = osm; bases[T.esri] = esri; bases[T.plain] = plain;
    this.offline = false;
    [osm, esri].forEach(function (layer) {
      var loaded = 0, failed = 0;
      layer.on('tileload', function () { loaded++; });
      layer.on('tileerror', function (e) {
        failed++;
        if (e.tile) e.tile.style.visibility = 'hidden';  // no broken-image grid
        if (!loaded && failed >= 2) app.goOffline(layer);
      });
    });

    this.layers = {};
    if (this.V) {
      this.layers.verdict = this.parcelLayer(function (i) { return app.verdictColor(i); });
      overlays[T.verdict_layer] = this.layers.verdict;
    }
    if (this.C) {
      var flag = this.C.flag;
      this.layers.loss = this.parcelLayer(function (i) { return app.claimColor(i); },
        function (i) { return flag(i) === 1; });
      overlays[T.loss_layer] = this.layers.loss;
    }
    if (!this.V && !this.C) {
      this.layers.parcels = this.parcelLayer(function () { return app.LB.colors.none; });
      overlays[T.parcel] = this.layers.parcels;
    }
    this.images.forEach(function (im) { overlays[im.info.name] = im.layer; });
    if ((h.photos || []).length) {
      var group = L.layerGroup();
      h.photos.forEach(function (p) {
        L.circleMarker([p.y, p.x], {radius: 6, color: app.LB.colors.photo, weight: 2,
          fillColor: '#42a5f5', fillOpacity: 0.9, pane: 'a3select', bubblingMouseEvents: false})
          .bindPopup(function () { return app.photoPopup(p); }, {autoPan: false}).addTo(group);
      });
      this.layers.photo = group;
      overlays[T.photo_layer] = group;
    }
    var shown = this.layers.loss || this.layers.verdict || this.layers.parcels;
    shown.addTo(map);
    if (this.layers.photo) this.layers.photo.addTo(map);

    this.title = this.titleControl().addTo(map);
    this.control = L.control.layers(bases, overlays, {collapsed: map.getSize().x < 700,
      position: 'topright'}).addTo(map);
    L.control.zoom({position: 'topleft'}).addTo(map);
    this.searchControl().addTo(map);
    this.locateControl().addTo(map);
    L.control.scale({position: 'bottomleft', imperial: false}).addTo(map);
    this.legend = this.legendControl().addTo(map);
    map.on('overlayadd overlayremove', function () { app.updateLegend(); });
    map.on('click', function (e) { app.click(e.latlng); });
    map.on('popupclose', function () { app.clearSelection(); });
    map.on('popupopen', function (e) { app.clearOfControls(e.popup); });

    if (h.bbox) map.fitBounds([[h.bbox[1], h.bbox[0]], [h.bbox[3], h.bbox[2]]], {padding: [20, 20]});
    else map.setView([35, 110], 4);
    if (navigator.onLine === false) { plain.addTo(map); this.goOffline(null); } else osm.addTo(map);
    this.updateLegend();
  };

  /* No web tiles: a plain background, the job's latest image on, and a note saying so. */
  App.prototype.goOffline = function (layer) {
    if (this.offline) return;
    this.offline = true;
    var map = this.map;
    this.web.forEach(function (w) { if (map.hasLayer(w)) map.removeLayer(w); });
    if (!map.hasLayer(this.plain)) this.plain.addTo(map);
    var order = ['false_after', 'true_after', 'ndvi_change', 'true_season', 'false_season',
      'true_before', 'false_before', 'raster'];
    var pick = null;
    order.forEach(function (k) {
      this.images.forEach(function (im) { if (!pick && im.info.kind === k) pick = im; });
    }, this);
    if (pick && !map.hasLayer(pick.layer)) pick.layer.addTo(map);
    this.note(pick ? this.t('offline') : this.t('offline_plain'), 'a3offline');
    this.offlineFrom = layer ? 'tiles' : 'navigator';
    this.updateLegend();
  };

  App.prototype.note = function (text, cls) {
    var p = el('div', 'a3note ' + (cls || ''), text);
    this.titleBox.appendChild(p);
  };

  App.prototype.toast = function (text) {
    var box = document.getElementById('a3msg');
    box.textContent = text;
    box.hidden = false;
    clearTimeout(this._toast);
    this._toast = setTimeout(function () { box.hidden = true; }, 5000);
  };

  App.prototype.toLatLng = function (x, y) { return this.map.unproject(L.point(x, y), 0); };

  /* The parcel under a point: within tolPx pixels; a parcel too small to aim at wins. */
  App.prototype.hit = function (latlng, tolPx) {
    var G = this.G, z = this.map.getZoom(), s = Math.pow(2, z);
    var p = this.map.project(latlng, 0), tol = tolPx / s, cand = [];
    this.query(p.x - tol, p.y - tol, p.x + tol, p.y + tol, function (i) {
      var d = distance(G, i, p.x, p.y);
      if (d <= tol) {
        var w = Math.min(G.box[4 * i + 2] - G.box[4 * i], G.box[4 * i + 3] - G.box[4 * i + 1]) * s;
        cand.push({i: i, d: d, small: w < 3 * Math.max(tolPx, 1), area: G.area[i]});
      }
    });
    if (!cand.length) return null;
    function smallest(list) { return list.reduce(function (a, b) { return b.area < a.area ? b : a; }).i; }
    var small = cand.filter(function (c) { return c.small; });
    if (small.length) return smallest(small);
    var inside = cand.filter(function (c) { return c.d === 0; });
    if (inside.length) return smallest(inside);
    return cand.reduce(function (a, b) { return b.d < a.d ? b : a; }).i;
  };

  App.prototype.parcelsShown = function () {
    var map = this.map;
    return ['verdict', 'loss', 'parcels'].some(function (k) {
      return this.layers[k] && map.hasLayer(this.layers[k]);
    }, this);
  };

  App.prototype.click = function (latlng) {
    if (!this.parcelsShown()) return;
    var i = this.hit(latlng, L.Browser.mobile ? 10 : 5);
    if (i !== null) this.select(i, latlng, false);
  };

  App.prototype.clearSelection = function () {
    if (this.selected) { this.selected.remove(); this.selected = null; }
  };

  App.prototype.select = function (i, latlng, zoom) {
    var G = this.G, rings = [];
    for (var r = G.pr[i]; r < G.pr[i + 1]; r++) {
      var ring = [];
      for (var j = G.rv[r]; j < G.rv[r + 1]; j++) ring.push(this.toLatLng(G.X[j], G.Y[j]));
      rings.push(ring);
    }
    if (zoom && rings.length) {
      var b = L.latLngBounds(rings[0]);
      this.map.fitBounds(b, {maxZoom: 17, animate: false});
    }
    if (!latlng) {
      latlng = rings.length ? this.toLatLng((G.box[4 * i] + G.box[4 * i + 2]) / 2,
        (G.box[4 * i + 1] + G.box[4 * i + 3]) / 2) : this.map.getCenter();
    }
    this.map.closePopup();
    this.clearSelection();
    if (rings.length) {
      this.selected = L.polygon(rings, {pane: 'a3select', color: '#00e5ff', weight: 3, fill: false,
        interactive: false, renderer: L.svg({pane: 'a3select'})}).addTo(this.map);
    }
    // the content's width: Leaflet's popup adds 47 px (margins, border); 8 px clear each side
    var size = this.map.getSize(), width = Math.max(160, size.x - 63);
    L.popup({maxWidth: Math.min(520, width), minWidth: Math.min(260, width),
      maxHeight: Math.max(160, size.y - 130), autoPan: false, className: 'a3popup'})
      .setLatLng(latlng).setContent(this.popup(i)).openOn(this.map);  // placed on popupopen
    this.current = i;
  };

  /* Place an open popup inside the map and under no control (title, layers, search, legend,
     scale, attribution): controls draw above popups, so one would hide the parcel id or the
     figures. The popup is panned to the position (where it is, or just clear of the left or the
     right column of controls) with the most free height; if it is still too tall, the legend is
     folded (unfolded again when the popup closes), then the popup is shortened (it scrolls). */
  App.prototype.clearOfControls = function (popup) {
    var app = this, map = this.map, node = popup.getElement(), margin = 8;
    if (!node) return;
    var m = map.getContainer().getBoundingClientRect();
    var controls = [].slice.call(map.getContainer().querySelectorAll('.leaflet-control'));
    function boxes() {
      return controls.map(function (c) {
        return {r: c.getBoundingClientRect(), top: !!c.closest('.leaflet-top'),
          left: !!c.closest('.leaflet-left')};
      }).filter(function (c) { return c.r.width > 0 && c.r.height > 0; });
    }
    // the free rows for a popup spanning [left, right): below the top controls above the others
    function band(cs, left, right) {
      var top = m.top + margin, bottom = m.bottom - margin;
      cs.forEach(function (c) {
        if (c.r.right <= left || c.r.left >= right) return;
        if (c.top) top = Math.max(top, c.r.bottom + margin);
        else bottom = Math.min(bottom, c.r.top - margin);
      });
      return {top: top, bottom: bottom, h: bottom - top};
    }
    function best(b) {
      var cs = boxes(), lo = m.left + margin, hi = Math.max(lo, m.right - margin - b.width);
      var beside = [m.left + margin, m.right - margin - b.width];
      cs.forEach(function (c) {
        if (c.left) beside[0] = Math.max(beside[0], c.r.right + margin);
        else beside[1] = Math.min(beside[1], c.r.left - margin - b.width);
      });
      var pick = null;
      [b.left].concat(beside).forEach(function (x) {
        x = Math.max(lo, Math.min(hi, x));
        var f = band(cs, x, x + b.width), fits = Math.min(f.h, b.height);
        if (!pick || fits > pick.fits + 0.5 ||
            (fits > pick.fits - 0.5 && Math.abs(x - b.left) < Math.abs(pick.x - b.left))) {
          pick = {x: x, f: f, fits: fits};
        }
      });
      return pick;
    }
    var b = node.getBoundingClientRect(), p = best(b);
    if (p.f.h < b.height && this.legendBody && !this.legendBody.hidden) {
      this.legendBody.hidden = true;
      map.once('popupclose', function () { app.legendBody.hidden = false; });
      p = best(b);
    }
    if (p.f.h < b.height) {
      var content = node.querySelector('.leaflet-popup-content');
      popup.options.maxHeight = Math.max(100, p.f.h - (b.height - content.offsetHeight));
      popup.update();
      b = node.getBoundingClientRect();
      p = best(b);
    }
    var dx = b.left - p.x, dy = 0;
    if (b.top < p.f.top) dy = b.top - p.f.top;  // the ids at the top come first
    else if (b.bottom > p.f.bottom) dy = Math.min(b.bottom - p.f.bottom, b.top - p.f.top);
    if (Math.abs(dx) >= 1 || Math.abs(dy) >= 1) map.panBy([dx, dy], {animate: false});
  };

  function IndexApp(h, root) {
    var map = L.map(root, {zoomControl: true});
    var T = h.labels.text, group = L.featureGroup();
    L.tileLayer('https://tile.openstreetmap.org/{z}/{x}/{y}.png', {maxZoom: 19,
      attribution: '&copy; OpenStreetMap contributors'})
      .on('tileerror', function (e) { if (e.tile) e.tile.style.visibility = 'hidden'; }).addTo(map);
    h.index.forEach(function (p) {
      var b = p.bbox, box = el('div', 'a3pop');
      box.appendChild(el('b', 'a3pid', p.name));
      box.appendChild(el('div', '', T.parcels_n.split('{n}').join(p.n)));
      var a = el('a', 'a3open', T.open_part);
      a.setAttribute('href', p.file);
      box.appendChild(a);
      L.rectangle([[b[1], b[0]], [b[3], b[2]]], {color: '#1565c0', weight: 2, fillOpacity: 0.15})
        .bindPopup(box).bindTooltip(p.name + ' · ' + T.parcels_n.split('{n}').join(p.n)).addTo(group);
    });
    group.addTo(map);
    var title = L.control({position: 'topright'});
    title.onAdd = function () { var d = el('div', 'a3box a3title'); d.appendChild(el('div', 'a3titletext', h.title)); return d; };
    title.addTo(map);
    L.control.scale({imperial: false}).addTo(map);
    if (h.index.length) map.fitBounds(group.getBounds()); else map.setView([35, 110], 4);
    this.map = map;
    this.h = h;
  }

  var api = {ready: false, error: null, app: null, App: App, el: el, svgEl: svgEl,
    isoDay: isoDay};
  api.start = function (b64, oldBrowserText) {
    var root = document.getElementById('a3map');
    if (typeof DecompressionStream === 'undefined' || typeof L === 'undefined') {
      var m = document.getElementById('a3msg');
      m.textContent = oldBrowserText; m.hidden = false; m.className = 'a3fatal';
      api.error = 'unsupported browser';
      return Promise.resolve(null);
    }
    return gunzip(b64bytes(b64)).then(parse).then(function (h) {
      var app = h.index ? new IndexApp(h, root) : new App(h, root);
      api.app = app;
      var layer = app.layers && (app.layers.loss || app.layers.verdict || app.layers.parcels);
      if (layer && layer._map) {
        return new Promise(function (resolve) {
          var done = function () { api.ready = true; resolve(app); };
          if (layer._loading === false && layer._tilesToLoad === 0) done();
          else { layer.once('load', done); setTimeout(done, 20000); }
        });
      }
      api.ready = true;
      return app;
    }).catch(function (e) {
      api.error = String(e && e.stack || e);
      var m = document.getElementById('a3msg');
      m.textContent = String(e); m.hidden = false; m.className = 'a3fatal';
      throw e;
    });
  };
  window.agri3sMap = api;
})();
