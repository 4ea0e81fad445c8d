"""The layer table of an image network as the program that the fused CPU loop ``_cpu.image_pairs`` runs.

The loop holds, for LANES image pairs at once, one δ-image at a time: the covariances K(p, p + δ) (and Θ) of
every pixel p whose partner p + δ lies in the image (the method: ``kernels.analytic._cpu``, *image program*).
``compile_program(network, (C, H, W))`` walks the rows of ``network.layers`` (``kernels.analytic.rules``) up to
its readout and emits:

* a *phase* per resolution step: the rows that map each δ-image to itself run in it, one op per row (a Conv with
  stride 1 and no growth: window sum + affine rule; Dense on images: the affine rule; an activation, fused into
  the op before it when that op wrote its input; Dropout; the copy and sum of FanOut → parallel → FanInSum);
* at each row that mixes displacements (AvgPool/SumPool, a strided or growing Conv), a SCATTER of every δ-image
  into a buffer of the next resolution, by per-axis maps, and a LOAD from that buffer in the next phase (with the
  pooling norm; a Conv's affine rule follows). A branch behind the others catches up through identity
  scatters, so every branch ends in the same phase;
* per phase, the displacements it must compute, per axis: the readout's ('gap'/'gsp': all; 'flatten': δ = 0),
  then backwards through each scatter's maps; for the same-image pairs that supply the variances, δ = 0 wherever
  an activation reads them.

Rows after the readout act on vectors and run by the reference rules (``tail``). Networks with rows the loop
does not cover raise ``Unsupported`` (the engine then runs the reference rules): CIRCULAR padding, activations
without a fused dual (``_cpu.ACTIVATION_CODES``), a readout inside branches or none at all.
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np

from kernels.analytic import _cpu, rules


class Unsupported(ValueError):
    """The network has a row that the fused image loop does not run (the message says which)."""


def dual_columns(dual) -> list:
    """The dual's columns CODE … OFFSET of a parameter row (``_cpu``'s table), or Unsupported."""
    name = dual.name
    if name not in _cpu.ACTIVATION_CODES:
        why = ("has no closed-form dual (quadrature runs in the reference path)" if not dual.closed else
               f"is not one of the fused loops' duals ({', '.join(_cpu.ACTIVATION_CODES)}); the reference rules "
               "run it")
        raise Unsupported(f"activation {name!r} {why}")
    a, b = dual.params if name == "abrelu" else (float(dual.slope), 1.0)
    erf_a, erf_b, erf_c = dual.params if name == "scaled_erf" else (1.0, 1.0, 0.0)
    return [float(_cpu.ACTIVATION_CODES[name]), (a * a + b * b) / (2.0 * math.pi), 2.0 * a * b / (2.0 * math.pi),
            erf_b * erf_b, erf_a * erf_a, erf_c * erf_c]


def affine_columns(layer, area: int = 1) -> list:
    """The affine columns SCALE … NTK_BIAS of a Dense or Conv row (``area``: a conv's filter area fh·fw; the loop
    sums the window, so its mean's 1/area goes into SCALE and FAN)."""
    b2, ntk_bias = layer.bias_terms
    standard = layer.parameterization == "standard"
    on = 1.0 if layer.trained else 0.0
    return [layer.w_std ** 2 / area, b2, (layer.fan_in or 0.0) / area, 0.0 if standard else on,
            on if standard else 0.0, ntk_bias]


def axis_map(n: int, m: int, window: int, stride: int, lo: int, pool: bool) -> list:
    """Per input displacement d = −(n − 1) … n − 1 along one axis, the entries (Δ, U0, u0, count, taps) of a windowed
    sum with this stride and low pad: output pixel P ∈ [U0, U0 + count) of the output δ-image Δ (counted from its
    first pixel max(0, −Δ)) receives input pixel u0 + stride·(P − U0) of the input δ-image d (counted from
    max(0, −d)). A convolution pairs the offsets (i, i) of its window, a pooling layer every (i, j): input pixels
    p = s·P − lo + i and p + d = s·Q − lo + j, so d = s·Δ + j − i; ``taps`` consecutive input pixels from u0 on
    are summed into each output pixel (``_merged``)."""
    table = []
    for d in range(-(n - 1), n):
        p0, p1 = max(0, -d), min(n, n - d)
        entries = []
        for i in range(window):
            for j in (range(window) if pool else (i,)):
                if (d - (j - i)) % stride:
                    continue
                delta = (d - (j - i)) // stride
                if abs(delta) >= m:
                    continue
                q0, q1 = max(0, -delta), min(m, m - delta)
                first = max(q0, -((i - lo - p0) // stride))          # ⌈(p0 + lo − i)/s⌉
                last = min(q1 - 1, (p1 - 1 + lo - i) // stride)
                if last >= first:
                    entries.append((delta, first - q0, stride * first - lo + i - p0, last - first + 1))
        table.append(_merged(entries))
    return table


def _merged(entries) -> list:
    """The entries with one more column, taps: entries of one output range (Δ, U0, count) whose inputs start at
    consecutive pixels u0, u0 + 1, … become one entry that sums them (a 2-wide pooling window: one add of a
    pair instead of two)."""
    groups = {}
    for delta, u_out, u_in, count in entries:
        groups.setdefault((delta, u_out, count), []).append(u_in)
    out = []
    for (delta, u_out, count), starts in groups.items():
        starts.sort()
        run = [starts[0]]
        for u in starts[1:] + [None]:
            if u is not None and u == run[-1] + 1:
                run.append(u)
                continue
            out.append((delta, u_out, run[0], count, len(run)))
            if u is not None:
                run = [u]
    return out


def _real_pixels(n: int, window: int, stride: int, lo: int, m: int) -> np.ndarray:
    """How many real (unpadded) input pixels each of the m output windows covers."""
    return np.array([sum(0 <= stride * p - lo + i < n for i in range(window)) for p in range(m)], dtype=float)


@dataclasses.dataclass
class Program:
    """The arrays ``_cpu.image_pairs`` reads, and what the driver needs around it (its docstring names them)."""

    ops: np.ndarray
    prm: np.ndarray
    phase_ops: np.ndarray
    phase_res: np.ndarray
    need: dict              # 'output', 'variances': (need_y, need_x) per phase
    var_off: np.ndarray
    buf_res: np.ndarray
    buf_pixels: int
    buf_doff: np.ndarray
    delta_off: np.ndarray
    axis_ptr: np.ndarray
    axis_ent: np.ndarray
    factors: np.ndarray
    n_slots: int
    margin: int
    readout_norm: float     # the readout sum's divisor: (H·W)² for 'gap', 1 for 'gsp', H·W for 'flatten'
    tail: tuple             # the rows after the readout (vectors: the reference rules run them)

    def masks(self, output: bool, variances: bool) -> tuple:
        """(need_y, need_x) for the pairs that must give the readout (``output``) and/or record variances."""
        parts = [self.need[k] for k, on in (("output", output), ("variances", variances)) if on]
        return tuple(np.logical_or.reduce([p[axis] for p in parts]) for axis in (0, 1))


@dataclasses.dataclass(frozen=True)
class _State:
    phase: int
    slot: int
    n_y: int
    n_x: int
    theta_zero: bool        # Θ is exactly zero here (no trained layer yet): the loop skips its sums


class _Builder:
    def __init__(self):
        self.phases = [[]]          # per phase: ops as [ints, floats]
        self.free, self.n_slots = [], 0
        self.acts, self.act_phases = [], set()
        self.buffers = []           # (m_y, m_x)
        self.scatters = []          # (phase, buffer, map_y, map_x)
        self.maps, self.factor_lists = [], []
        self.margin = 0

    def alloc(self) -> int:
        if self.free:
            self.free.sort()
            return self.free.pop(0)
        self.n_slots += 1
        return self.n_slots - 1

    def release(self, slot: int):
        self.free.append(slot)

    def emit(self, phase: int, code: int, floats=None, **fields) -> list:
        ints = [0] * _cpu.N_INTS
        ints[_cpu.OP], ints[_cpu.ACT_INDEX], ints[_cpu.MAP_Y], ints[_cpu.MAP_X] = code, -1, -1, -1
        for name, value in fields.items():
            ints[getattr(_cpu, name)] = int(value)
        row = [ints, list(floats) if floats is not None else [0.0] * _cpu.N_FIELDS]
        while len(self.phases) <= phase:
            self.phases.append([])
        self.phases[phase].append(row)
        return row

    @staticmethod
    def _res(st: _State, m_y=None, m_x=None) -> dict:
        return dict(NY=st.n_y, NX=st.n_x, MY=st.n_y if m_y is None else m_y, MX=st.n_x if m_x is None else m_x)

    # ------------------------------------------------------------------------------------------- rows
    def rows(self, layers, st: _State) -> _State:
        for layer in layers:
            st = self.row(layer, st)
        return st

    def row(self, layer, st: _State) -> _State:
        kind = layer.kind
        if kind == "dense":
            floats = [0.0] * 6 + affine_columns(layer)
            self.emit(st.phase, _cpu.AFFINE, floats, SRC=st.slot, DST=st.slot, THETA_ZERO=st.theta_zero,
                      **self._res(st))
            return dataclasses.replace(st, theta_zero=st.theta_zero and not layer.trained)
        if kind == "conv":
            return self.conv(layer, st)
        if kind == "avg_pool":
            return self.pool(layer, st)
        if kind == "activation":
            return self.activation(layer, st)
        if kind == "dropout":
            floats = [0.0] * _cpu.N_FIELDS
            floats[_cpu.SCALE] = 1.0 / layer.keep_rate
            self.emit(st.phase, _cpu.DROPOUT, floats, SRC=st.slot, DST=st.slot, THETA_ZERO=st.theta_zero,
                      **self._res(st))
            return st
        if kind == "branches":
            return self.branches(layer, st)
        if kind == "readout":
            raise Unsupported("a readout inside branches (the fused image loop reads out once, at the top level)")
        raise Unsupported(f"layer kind {kind!r}")

    def _geometry(self, layer, st: _State) -> tuple:
        if layer.padding == "CIRCULAR":
            raise Unsupported(f"{'Conv' if layer.kind == 'conv' else 'pooling'} with 'CIRCULAR' padding")
        return tuple(rules.axis_geometry(n, f, s, layer.padding, axis) for axis, (n, f, s) in
                     enumerate(zip((st.n_y, st.n_x), layer.window, layer.strides)))

    def conv(self, layer, st: _State) -> _State:
        (m_y, lo_y, hi_y), (m_x, lo_x, hi_x) = self._geometry(layer, st)
        f_y, f_x = layer.window
        floats = [0.0] * 6 + affine_columns(layer, f_y * f_x)
        theta_zero = st.theta_zero and not layer.trained
        if layer.strides == (1, 1) and m_y <= st.n_y and m_x <= st.n_x:
            self.margin = max(self.margin, lo_y, hi_y, lo_x, hi_x)
            self.emit(st.phase, _cpu.CONV, floats, SRC=st.slot, DST=st.slot, FY=f_y, FX=f_x, LY=lo_y, LX=lo_x,
                      THETA_ZERO=st.theta_zero, **self._res(st, m_y, m_x))
            return _State(st.phase, st.slot, m_y, m_x, theta_zero)
        maps = (axis_map(st.n_y, m_y, f_y, layer.strides[0], lo_y, False),
                axis_map(st.n_x, m_x, f_x, layer.strides[1], lo_x, False))
        st = self.transition(st, maps, (m_y, m_x), layer.strides, None)
        self.emit(st.phase, _cpu.AFFINE, floats, SRC=st.slot, DST=st.slot, THETA_ZERO=st.theta_zero,
                  **self._res(st))
        return dataclasses.replace(st, theta_zero=theta_zero)

    def pool(self, layer, st: _State) -> _State:
        geometry = self._geometry(layer, st)
        maps, factors = [], []
        for n, (m, lo, _), w, s in zip((st.n_y, st.n_x), geometry, layer.window, layer.strides):
            maps.append(axis_map(n, m, w, s, lo, True))
            factors.append(1.0 / _real_pixels(n, w, s, lo, m))
        f_y, f_x = layer.window
        scale = {"window": 1.0 / (f_y * f_x) ** 2, "none": 1.0, "edges": 1.0}[layer.pool_norm]
        return self.transition(st, maps, (geometry[0][0], geometry[1][0]), layer.strides,
                               factors if layer.pool_norm == "edges" else None, scale)

    def transition(self, st: _State, maps, m, strides, factors, scale: float = 1.0) -> _State:
        """SCATTER the δ-images of this phase into a new buffer, LOAD them in the next phase (times ``scale``, or
        the per-axis ``factors``)."""
        buffer = len(self.buffers)
        self.buffers.append(m)
        bases = [self.add_map(table) for table in maps]
        self.emit(st.phase, _cpu.SCATTER, SRC=st.slot, DST=buffer, SY=strides[0], SX=strides[1], MAP_Y=bases[0],
                  MAP_X=bases[1], THETA_ZERO=st.theta_zero, **self._res(st, *m))
        self.scatters.append((st.phase, buffer, maps))
        self.release(st.slot)
        phase, slot = st.phase + 1, self.alloc()
        fields = {} if factors is None else dict(MAP_Y=self.add_factors(factors[0]), MAP_X=self.add_factors(factors[1]))
        floats = [0.0] * _cpu.N_FIELDS
        floats[_cpu.SCALE] = scale
        self.emit(phase, _cpu.LOAD, floats, SRC=buffer, DST=slot, NY=m[0], NX=m[1], MY=m[0], MX=m[1],
                  THETA_ZERO=st.theta_zero, **fields)
        return _State(phase, slot, m[0], m[1], st.theta_zero)

    def activation(self, layer, st: _State) -> _State:
        columns = dual_columns(layer.dual)
        index = len(self.acts)
        self.acts.append((st.n_y, st.n_x))
        self.act_phases.add(st.phase)
        ops = self.phases[st.phase]
        if ops and ops[-1][0][_cpu.OP] in (_cpu.CONV, _cpu.AFFINE) and ops[-1][0][_cpu.DST] == st.slot \
                and ops[-1][0][_cpu.ACT_INDEX] < 0:
            ops[-1][0][_cpu.ACT_INDEX] = index           # the dual fused into the op that wrote its input
            ops[-1][1][:6] = columns
            return st
        self.emit(st.phase, _cpu.ACT, columns + [0.0] * 6, SRC=st.slot, DST=st.slot, ACT_INDEX=index,
                  THETA_ZERO=st.theta_zero, **self._res(st))
        return st

    def branches(self, layer, st: _State) -> _State:
        outs = []
        for k, branch in enumerate(layer.branches):
            start = st
            if k < len(layer.branches) - 1:              # every branch but the last works on a copy
                start = dataclasses.replace(st, slot=self.alloc())
                self.emit(st.phase, _cpu.COPY, SRC=st.slot, DST=start.slot, THETA_ZERO=st.theta_zero,
                          **self._res(st))
            outs.append(self.rows(branch, start))
        last = max(o.phase for o in outs)
        identity = lambda n: axis_map(n, n, 1, 1, 0, False)   # noqa: E731
        for k, o in enumerate(outs):
            while o.phase < last:
                o = self.transition(o, (identity(o.n_y), identity(o.n_x)), (o.n_y, o.n_x), (1, 1), None)
            outs[k] = o
        total = outs[0]
        if any((o.n_y, o.n_x) != (total.n_y, total.n_x) for o in outs):
            raise Unsupported("branches of different resolutions")
        theta_zero = total.theta_zero
        for o in outs[1:]:
            self.emit(last, _cpu.ADD, SRC=o.slot, DST=total.slot, THETA_ZERO=int(theta_zero) | 2 * int(o.theta_zero),
                      **self._res(o))
            self.release(o.slot)
            theta_zero = theta_zero and o.theta_zero
        return dataclasses.replace(total, theta_zero=theta_zero)

    # ------------------------------------------------------------------------------------------- tables
    def add_map(self, table) -> int:
        base = sum(len(t) + 1 for t in self.maps)
        self.maps.append(table)
        return base

    def add_factors(self, values) -> int:
        base = sum(len(f) for f in self.factor_lists)
        self.factor_lists.append(np.asarray(values, dtype=np.float64))
        return base


def _preimage(table, wanted: np.ndarray, center_out: int, size: int, center_in: int) -> np.ndarray:
    """The input displacements (mask of ``size``, d at d + center_in) whose map entries reach a wanted Δ."""
    out = np.zeros(size, dtype=bool)
    n = (len(table) + 1) // 2
    for t, entries in enumerate(table):
        if any(wanted[entry[0] + center_out] for entry in entries):
            out[t - (n - 1) + center_in] = True
    return out


def compile_program(network: rules.Network, feature_shape: tuple) -> Program:
    """The program of ``network`` on images of ``feature_shape`` (C, H, W), or Unsupported."""
    layers = network.layers
    cut = [k for k, layer in enumerate(layers) if layer.kind == "readout"]
    if not cut:
        raise Unsupported("no readout (GlobalAvgPool, GlobalSumPool or Flatten)")
    readout, tail = layers[cut[0]], tuple(layers[cut[0] + 1:])
    _, h, w = feature_shape
    builder = _Builder()
    st = _State(0, builder.alloc(), h, w, True)
    builder.emit(0, _cpu.INPUT, DST=st.slot, **_Builder._res(st))
    st = builder.rows(layers[:cut[0]], st)
    mode = readout.readout or ("gap" if network.full_spatial else "flatten")
    builder.emit(st.phase, _cpu.READOUT, SRC=st.slot, MODE=int(mode == "flatten"), THETA_ZERO=st.theta_zero,
                 **_Builder._res(st))
    norm = {"gap": float((st.n_y * st.n_x) ** 2), "gsp": 1.0, "flatten": float(st.n_y * st.n_x)}[mode]
    return _assemble(builder, st, mode, norm, tail)


def _assemble(builder: _Builder, last: _State, mode: str, norm: float, tail: tuple) -> Program:
    phases = builder.phases
    rows = [row for ops in phases for row in ops]
    ops = np.array([r[0] for r in rows], dtype=np.int64)
    prm = np.array([r[1] for r in rows], dtype=np.float64)
    phase_ops = np.cumsum([0] + [len(p) for p in phases]).astype(np.int64)
    phase_res = np.array([[max(r[0][_cpu.NY] for r in p), max(r[0][_cpu.NX] for r in p)] for p in phases],
                         dtype=np.int64)
    h_max, w_max = int(phase_res[:, 0].max()), int(phase_res[:, 1].max())
    centers = (h_max - 1, w_max - 1)
    sizes = (2 * h_max - 1, 2 * w_max - 1)

    def propagate(final: tuple, act_zero: bool) -> tuple:
        masks = [[np.zeros(sizes[axis], dtype=bool) for axis in (0, 1)] for _ in phases]
        for axis in (0, 1):
            masks[-1][axis] |= final[axis]
        for f in range(len(phases) - 1, -1, -1):
            if act_zero and f in builder.act_phases:
                for axis in (0, 1):
                    masks[f][axis][centers[axis]] = True
            for phase, buffer, maps in builder.scatters:
                if phase == f:
                    for axis in (0, 1):
                        masks[f][axis] |= _preimage(maps[axis], masks[f + 1][axis], centers[axis], sizes[axis],
                                                    centers[axis])
        return tuple(np.array([m[axis] for m in masks]) for axis in (0, 1))

    final = []
    for axis, n in enumerate((last.n_y, last.n_x)):
        mask = np.zeros(sizes[axis], dtype=bool)
        if mode == "flatten":
            mask[centers[axis]] = True
        else:
            mask[centers[axis] - (n - 1):centers[axis] + n] = True
        final.append(mask)
    none = tuple(np.zeros(s, dtype=bool) for s in sizes)
    need = {"output": propagate(tuple(final), False), "variances": propagate(none, True)}
    var_off = np.cumsum([0] + [ry * rx for ry, rx in builder.acts]).astype(np.int64)
    buf_res = np.array(builder.buffers or [(1, 1)], dtype=np.int64).reshape(-1, 2)
    delta_off, buf_doff, pixels = [], [], 0
    for m_y, m_x in builder.buffers:
        buf_doff.append(len(delta_off))
        for dy in range(-(m_y - 1), m_y):
            for dx in range(-(m_x - 1), m_x):
                delta_off.append(pixels)
                pixels += (m_y - abs(dy)) * (m_x - abs(dx))
    axis_ptr, axis_ent = [], []
    for table in builder.maps:
        for entries in table:
            axis_ptr.append(len(axis_ent))
            axis_ent.extend(entries)
        axis_ptr.append(len(axis_ent))
    factors = np.concatenate(builder.factor_lists) if builder.factor_lists else np.zeros(1)
    return Program(ops, prm, phase_ops, phase_res, need, var_off, buf_res, pixels,
                   np.array(buf_doff or [0], dtype=np.int64), np.array(delta_off or [0], dtype=np.int64),
                   np.array(axis_ptr or [0], dtype=np.int64),
                   np.array(axis_ent or [(0, 0, 0, 0, 1)], dtype=np.int64).reshape(-1, 5), factors,
                   builder.n_slots, builder.margin, norm, tail)
