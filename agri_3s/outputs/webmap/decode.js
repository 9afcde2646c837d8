/* agri_3s adjuster map (see page.py), part 1: the data block decoded — container,
   columns, geometry (varint deltas → world pixels at zoom 0), a grid index over the parcels'
   boxes and the point-to-parcel distance the clicks use. */
(function () {
  'use strict';
  var R = 6378137;
  var TYPES = {u8: Uint8Array, i8: Int8Array, u16: Uint16Array, i16: Int16Array,
    u32: Uint32Array, i32: Int32Array, f32: Float32Array, f64: Float64Array};

  function b64bytes(s) {
    var bin = atob(s.trim()), n = bin.length, out = new Uint8Array(n);
    for (var i = 0; i < n; i++) out[i] = bin.charCodeAt(i);
    return out;
  }

  function gunzip(bytes) {
    var stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream('gzip'));
    return new Response(stream).arrayBuffer();
  }

  function parse(buf) {
    var u8 = new Uint8Array(buf);
    if (String.fromCharCode(u8[0], u8[1], u8[2], u8[3]) !== 'A3M1') throw new Error('bad data');
    var n = new DataView(buf).getUint32(4, true);
    var head = JSON.parse(new TextDecoder().decode(u8.subarray(8, 8 + n)));
    var base = 8 + n;
    base += (8 - base % 8) % 8;
    head.arr = function (ref) { return new TYPES[ref.y](buf, base + ref.o, ref.n); };
    return head;
  }

  /* A column of per-parcel values → a getter i → value (null when missing). */
  function column(h, c) {
    if (!c) return function () { return null; };
    if (c.t === 's') return function (i) { return c.v[i]; };
    var a = h.arr(c.a);
    if (c.t === 'c') return function (i) { return c.d[a[i]]; };
    var nan = a instanceof Int16Array ? -32768 : -2147483648;
    if (c.t === 'd') return function (i) { return a[i] === nan ? null : a[i]; };
    return function (i) { var v = a[i]; return v === nan ? null : v * c.k; };
  }

  function columns(h, group) {
    var out = {};
    if (!group) return null;
    Object.keys(group).forEach(function (k) { out[k] = column(h, group[k]); });
    return out;
  }

  /* Geometry: varint streams → world pixel coordinates at zoom 0 (Leaflet's EPSG:3857). */
  function decodeGeometry(h) {
    var g = h.geom, n = g.n;
    function varints(ref, count) {
      var b = h.arr(ref), out = new Float64Array(count === undefined ? b.length : count);
      var p = 0, k = 0;
      while (p < b.length) {
        var r = 0, s = 1, x;
        do { x = b[p++]; r += (x & 127) * s; s *= 128; } while (x >= 128);
        out[k++] = r;
      }
      return out.subarray(0, k);
    }
    var rings = varints(g.rings), verts = varints(g.verts), xy = varints(g.xy);
    var pr = new Uint32Array(n + 1), nr = 0;
    for (var i = 0; i < n; i++) { pr[i] = nr; nr += rings[i]; }
    pr[n] = nr;
    var rv = new Uint32Array(nr + 1), nv = 0;
    for (i = 0; i < nr; i++) { rv[i] = nv; nv += verts[i]; }
    rv[nr] = nv;
    var X = new Float64Array(nv), Y = new Float64Array(nv);
    var f = 256 / (2 * Math.PI * R) * g.unit, fx = 0, fy = 0, qx = 0, qy = 0, p = 0;
    function unzig(v) { return v % 2 ? -(v + 1) / 2 : v / 2; }
    for (var r = 0; r < nr; r++) {
      for (var j = rv[r]; j < rv[r + 1]; j++) {
        var dx = unzig(xy[p++]), dy = unzig(xy[p++]);
        if (j === rv[r]) { qx = fx + dx; qy = fy + dy; fx = qx; fy = qy; } else { qx += dx; qy += dy; }
        X[j] = 128 + qx * f;
        Y[j] = 128 - qy * f;
      }
    }
    var box = new Float64Array(4 * n);
    for (i = 0; i < n; i++) {
      var x0 = Infinity, y0 = Infinity, x1 = -Infinity, y1 = -Infinity;
      for (j = rv[pr[i]]; j < rv[pr[i + 1]]; j++) {
        if (X[j] < x0) x0 = X[j]; if (X[j] > x1) x1 = X[j];
        if (Y[j] < y0) y0 = Y[j]; if (Y[j] > y1) y1 = Y[j];
      }
      box[4 * i] = x0; box[4 * i + 1] = y0; box[4 * i + 2] = x1; box[4 * i + 3] = y1;
    }
    return {n: n, pr: pr, rv: rv, X: X, Y: Y, box: box, area: h.arr(g.area)};
  }

  /* A uniform grid over the parcels' boxes: which parcels may touch a rectangle. */
  function gridIndex(G) {
    var n = G.n, x0 = Infinity, y0 = Infinity, x1 = -Infinity, y1 = -Infinity, i;
    for (i = 0; i < n; i++) {
      if (G.box[4 * i] > G.box[4 * i + 2]) continue;
      x0 = Math.min(x0, G.box[4 * i]); y0 = Math.min(y0, G.box[4 * i + 1]);
      x1 = Math.max(x1, G.box[4 * i + 2]); y1 = Math.max(y1, G.box[4 * i + 3]);
    }
    if (!(x1 >= x0)) { x0 = y0 = 0; x1 = y1 = 1; }
    var side = Math.max(1, Math.ceil(Math.sqrt(n / 2))), cw = Math.max((x1 - x0) / side, 1e-12),
      ch = Math.max((y1 - y0) / side, 1e-12);
    function cells(b) {
      return [Math.max(0, Math.min(side - 1, Math.floor((b[0] - x0) / cw))),
        Math.max(0, Math.min(side - 1, Math.floor((b[1] - y0) / ch))),
        Math.max(0, Math.min(side - 1, Math.floor((b[2] - x0) / cw))),
        Math.max(0, Math.min(side - 1, Math.floor((b[3] - y0) / ch)))];
    }
    var count = new Uint32Array(side * side + 1), c, a, b;
    for (i = 0; i < n; i++) {
      if (G.box[4 * i] > G.box[4 * i + 2]) continue;
      c = cells(G.box.subarray(4 * i, 4 * i + 4));
      for (b = c[1]; b <= c[3]; b++) for (a = c[0]; a <= c[2]; a++) count[b * side + a + 1]++;
    }
    for (i = 1; i <= side * side; i++) count[i] += count[i - 1];
    var items = new Uint32Array(count[side * side]), fill = count.slice(0, side * side);
    for (i = 0; i < n; i++) {
      if (G.box[4 * i] > G.box[4 * i + 2]) continue;
      c = cells(G.box.subarray(4 * i, 4 * i + 4));
      for (b = c[1]; b <= c[3]; b++) for (a = c[0]; a <= c[2]; a++) items[fill[b * side + a]++] = i;
    }
    var stamp = new Uint32Array(n), round = 0;
    return function query(qx0, qy0, qx1, qy1, visit) {
      if (qx1 < x0 || qy1 < y0 || qx0 > x1 || qy0 > y1) return;
      round++;
      var c = cells([qx0, qy0, qx1, qy1]);
      for (var b = c[1]; b <= c[3]; b++) {
        for (var a = c[0]; a <= c[2]; a++) {
          var k = b * side + a;
          for (var m = count[k]; m < count[k + 1]; m++) {
            var id = items[m];
            if (stamp[id] === round) continue;
            stamp[id] = round;
            if (G.box[4 * id] > qx1 || G.box[4 * id + 2] < qx0 || G.box[4 * id + 1] > qy1 ||
                G.box[4 * id + 3] < qy0) continue;
            visit(id);
          }
        }
      }
    };
  }

  /* Distance (world-0 units) from a point to parcel i: 0 inside (even-odd), else to its edges. */
  function distance(G, i, x, y) {
    var inside = false, best = Infinity;
    for (var r = G.pr[i]; r < G.pr[i + 1]; r++) {
      var s = G.rv[r], e = G.rv[r + 1];
      for (var j = s, k = e - 1; j < e; k = j++) {
        var xj = G.X[j], yj = G.Y[j], xk = G.X[k], yk = G.Y[k];
        if ((yj > y) !== (yk > y) && x < (xk - xj) * (y - yj) / (yk - yj) + xj) inside = !inside;
        var dx = xk - xj, dy = yk - yj, L2 = dx * dx + dy * dy;
        var t = L2 > 0 ? Math.max(0, Math.min(1, ((x - xj) * dx + (y - yj) * dy) / L2)) : 0;
        var ex = xj + t * dx - x, ey = yj + t * dy - y;
        best = Math.min(best, ex * ex + ey * ey);
      }
    }
    return inside ? 0 : Math.sqrt(best);
  }

  window.agri3sData = {b64bytes: b64bytes, gunzip: gunzip, parse: parse, columns: columns,
    decodeGeometry: decodeGeometry, gridIndex: gridIndex, distance: distance};
})();
