"""Hypothesis strategies for the passes: random programs shaped like the ones they transform.

`tile_programs()` (tile_strategies) draws arbitrary code, where the passes that move work
across loops (hoist, wavefront, sink, contract, bucket, the storage passes) rarely find
their shapes.  `pass_programs()` draws a `DrawnProgram` (a valid program, contract
included, and its inputs) of one or two *motifs*, each a family of programs the pipeline
meets, with random details that decide whether a pass may act, and whether it should:

* a recurrence nest (`nest`): 1-3 sequential loops over `l`, `t`, `u` (2-3 steps each)
  around a cell writing its state `h` at the next step of every loop and reading it back
  at offsets -1..+1 per loop: a scan `h[t + 1] = f(h[t])`, a stacked RNN
  `h[l + 1, t + 1] = f(h[l, t + 1], h[l + 1, t])`, a grid RNN's three neighbours, reads ahead
  (a backward distance), or a state one loop does not index (rewritten every step).  Next
  to the cell, maybe: a projection `p = x @ w` of the input or of the state (a stacked RNN's
  layer below; two GEMMs sharing that operand, now and then), which hoisting may batch;
  an invariant statement, the same every step (or reading the state, so not invariant);
  a temporary inside the cell (fused).  The batch `m` (1-3 points) is a parallel loop
  around the nest, around each stage, or stage dims.  Before the nest the state may be
  initialised; after it a parallel nest may read each step's state (a sink candidate, or
  not: reading the step after, or sharing a GEMM operand); a temporary state reaches the
  result copied whole after the nest, or step by step inside it (then rolled to a window);
* a sum of GEMMs (`sum`): `acc[r + 1] = acc[r] + x[r] @ w[r]` as lowering writes it (the
  contract pass's shape), the weights sometimes shared, the sum read at the last slot or
  another;
* element-wise steps over a batch (`map`), through a temporary: one stage or one per op,
  reading the point's own rows or the next one's;
* a GEMM per weight block (`heads`): `c[m, :, block d] = a[m] @ b[d]`, the widen_gemms
  pass's shape, or not quite (the left operand naming d, blocks not side by side, another op);
* a sorted ragged scan (`ragged`): a sequential loop marked `active m < live(t)` whose
  dead points write rows nothing reads (each point's last state is gathered through a
  const table), the bucket pass's shape; or not quite (an input projection in the loop, which
  hoisting batches out, cut to the live points);
* a ragged map over its padded box (`padded`): a stage over `m in 0:B, j in 0:L` (a product or
  an element-wise op), maybe a second stage reading the first's rows (or the next row), the
  live rows `j < len(m)` gathered into the result through a const table: the cut_dead pass's
  shape (no row dead, now and then).

Data buffers are float64; inputs hold distinct values, so a pass that reorders wrongly shows
in the outputs.  Hypothesis shrinks toward one small scan without extras.
"""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from fractal.lower.tile_parser import parse_tile_program
from tests.lower.tile_strategies import DrawnProgram

SEQ_VARS = ("l", "t", "u")
MOTIFS = ("nest", "map", "sum", "heads", "ragged", "padded")


@st.composite
def pass_programs(draw, motifs=MOTIFS) -> DrawnProgram:
    """A program of one or two different `motifs` (names of `_Motifs` methods; each motif's
    buffers and stages are named with its first letter)."""
    kinds = draw(st.lists(st.sampled_from(motifs), min_size=1, max_size=2, unique=True))
    buffers, body, inputs = [], [], {}
    for kind in kinds:
        motif = getattr(_Motifs(draw, kind[0]), kind)()
        buffers += motif[0]
        body += motif[1]
        inputs.update(motif[2])
    text = "tile @drawn {\n  " + "\n  ".join(buffers) + "\n  " + "\n  ".join(body) + "\n}"
    return DrawnProgram(parse_tile_program(text).verify(), inputs)


def _values(shape) -> np.ndarray:
    """Distinct small positive values."""
    n = int(np.prod(shape))
    return (np.arange(1, n + 1, dtype=np.float64) / (8 * n)).reshape(shape)


def _dims(shape) -> str:
    return ",".join(str(n) for n in shape)


class _Motifs:
    """Draws one motif: (buffer declarations, statements, inputs); names carry the prefix."""

    def __init__(self, draw, prefix: str):
        self.draw, self.x = draw, prefix

    def name(self, base: str) -> str:
        return f"{self.x}{base}"

    # --- a recurrence nest ------------------------------------------------------------

    def nest(self):
        draw, n = self.draw, self.name
        depth = draw(st.sampled_from([1, 1, 2, 2, 3]))
        steps = [draw(st.integers(2, 3 if depth < 3 else 2)) for _ in range(depth)]
        place = draw(st.sampled_from(["none", "outer", "loop", "loop", "dim", "dim"]))
        points, cols = (1 if place == "none" else draw(st.integers(1, 3))), draw(st.integers(1, 2))
        seq = SEQ_VARS[:depth] if depth > 1 else ("t",)
        m = "0:1" if place == "none" else "m:m + 1"
        shape = tuple(s + 2 for s in steps) + (points, cols)

        def row(buf, index):
            return f"{n(buf)}[{', '.join(index)}, {m}, 0:{cols}]"

        def written():  # the next step of every loop; now and then a loop not indexed (the same slot)
            return [f"{v} + 1" if draw(st.integers(0, 9)) else "1" for v in seq]

        def read(at):  # one loop's previous step (a neighbour), else any offset in -1..+1 per loop
            if draw(st.integers(0, 2)):
                back = draw(st.sampled_from(range(depth)))
                return [at[k] if k != back else f"{v}" for k, v in enumerate(seq)]
            return [f"{v} + {1 + draw(st.integers(-1, 1))}" for v in seq]

        w, state_role = f"{n('w')}[0:{cols}, 0:{cols}]", draw(st.sampled_from(["output", "temp"]))
        buffers = [f"buffer {n('x')}: f64[{_dims(shape)}] global input",
                   f"buffer {n('w')}: f64[{cols},{cols}] global input",
                   f"buffer {n('h')}: f64[{_dims(shape)}] global {state_role}"]
        inputs = {n("x"): _values(shape), n("w"): _values((cols, cols))[::-1].copy()}
        at = written()
        stmts, operands = [], [row("h", read(at)) if draw(st.booleans()) else row("x", at)]
        if draw(st.booleans()):  # a projection, of the input (hoistable) or of the state (the layer below)
            src = row("x", at) if draw(st.integers(0, 2)) else row("h", read(at))
            ops = [f"{row('p', at)} = gemm({src}, {w})"]
            buffers.append(f"buffer {n('p')}: f64[{_dims(shape)}] global temp")
            operands.append(row("p", at if draw(st.integers(0, 3)) else read(at)))
            if draw(st.booleans()):  # a second weight for the same operand: merged GEMMs
                buffers += [f"buffer {n('v')}: f64[{cols},{cols}] global input",
                            f"buffer {n('p2')}: f64[{_dims(shape)}] global temp"]
                inputs[n("v")] = _values((cols, cols))
                ops.append(f"{row('p2', at)} = gemm({src}, {n('v')}[0:{cols}, 0:{cols}])")
                operands.append(row("p2", at))
            stmts.append(("proj", ops))
        if draw(st.integers(0, 2)) == 0:  # the same work every step (or not: reading the state)
            src = row("h", read(at)) if draw(st.integers(0, 3)) == 0 else row("x", ["0"] * depth)
            buffers.append(f"buffer {n('q')}: f64[1,{_dims(shape[-2:])}] global temp")
            stmts.append(("inv", [f"{n('q')}[0, {m}, 0:{cols}] = mul({src}, 0.5)"]))
            operands.append(f"{n('q')}[0, {m}, 0:{cols}]")
        first = row("h", read(at))
        if draw(st.integers(0, 3)) == 0:
            expr = f"gemm({first}, {w})"
        else:
            expr = first
            for operand in operands:
                expr = f"add({expr}, {operand})"
        if draw(st.integers(0, 2)) == 0:  # through a temporary: inlined, or written in place
            buffers.append(f"buffer {n('g')}: f64[{_dims(shape)}] global temp")
            last = "copy" if draw(st.booleans()) else "mul"
            cell = [f"{row('g', at)} = {expr}", f"{row('h', at)} = {last}({row('g', at)}{', 0.5' * (last == 'mul')})"]
        else:
            cell = [f"{row('h', at)} = {expr}"]
        emit = state_role == "temp" and draw(st.booleans())  # each step's state into the result, in the step
        if emit:
            cell.append(f"{row('y', at)} = copy({row('h', at)})")
        stmts.append(("cell", cell))
        if draw(st.integers(0, 3)) == 0:
            stmts = draw(st.permutations(stmts))
        body = [self.stage(name, ops, place, points) for name, ops in stmts]
        for v, s in reversed(list(zip(seq, steps))):
            body = [f"for {v} in 0:{s} sequential host {{ {' '.join(body)} }}"]
        if draw(st.integers(0, 3 if emit else 1)):
            plane = ", ".join(["0"] + [f"0:{s}" for s in shape[1:-2]] + [m, f"0:{cols}"])
            body.insert(0, self.stage("init", [f"{n('h')}[{plane}] = copy({n('x')}[{plane}])"], place, points))
        if place == "outer":
            body = [f"for m in 0:{points} parallel host {{ {' '.join(body)} }}"]
        whole = ", ".join(f"0:{s}" for s in shape)
        if draw(st.integers(0, 2)):
            body.append(self.consumer(seq, steps, place, points, cols, buffers, inputs, "y" if emit else "h"))
        if state_role == "temp":  # its steps copied into the result in the loop, or all of it after
            buffers.append(f"buffer {n('y')}: f64[{_dims(shape)}] global output")
            if not emit:
                body.append(f"stage {n('result')}() device {{ {n('y')}[{whole}] = copy({n('h')}[{whole}]) }}")
        return buffers, body, inputs

    def stage(self, name: str, ops, place: str, points: int) -> str:
        dims = f"m in 0:{points}" if place == "dim" else ""
        text = f"stage {self.name(name)}({dims}) device {{ {' '.join(ops)} }}"
        return f"for m in 0:{points} parallel host {{ {text} }}" if place == "loop" else text

    def consumer(self, seq, steps, place, points, cols, buffers, inputs, state: str) -> str:
        """A parallel nest after the loops reading each outer step's last state (in buffer `state`)."""
        draw, n, m = self.draw, self.name, ("0:1" if place == "none" else "m:m + 1")
        shift = draw(st.sampled_from([1, 1, 1, 0, 2]))  # 2 reads the step after: not sinkable as it is
        state = f"{n(state)}[{', '.join([f's + {shift}'] + [str(s) for s in steps[1:]])}, {m}, 0:{cols}]"
        kind = draw(st.sampled_from(["gemm", "gemm", "add", "shared"]))
        if kind == "gemm":  # every operand changes with the step: sinking loses no bigger GEMM
            buffers.append(f"buffer {n('k')}: f64[{steps[0]},{cols},{cols}] global input")
            inputs[n("k")] = _values((steps[0], cols, cols))
            expr = f"gemm({state}, {n('k')}[s, 0:{cols}, 0:{cols}])"
        elif kind == "add":
            expr = f"add({state}, {n('x')}[{', '.join(['s'] + ['0'] * (len(seq) - 1))}, {m}, 0:{cols}])"
        else:
            expr = f"gemm({state}, {n('w')}[0:{cols}, 0:{cols}])"
        buffers.append(f"buffer {n('o')}: f64[{steps[0]},{points},{cols}] global output")
        text = f"stage {n('out')}() device {{ {n('o')}[s, {m}, 0:{cols}] = {expr} }}"
        loops = [f"s in 0:{steps[0]}"] + ([f"m in 0:{points}"] if place != "none" else [])
        for loop in draw(st.permutations(loops)):
            text = f"for {loop} parallel host {{ {text} }}"
        return text

    # --- a sum of GEMMs -------------------------------------------------------------------

    def sum(self):
        draw, n = self.draw, self.name
        steps, rows, inner, cols = draw(st.integers(1, 3)), draw(st.integers(1, 2)), draw(st.integers(1, 2)), \
            draw(st.integers(1, 2))
        box = f"0:{rows}, 0:{cols}"
        weights = "r" if draw(st.integers(0, 3)) else "0"  # the same block every step, now and then
        read = steps if draw(st.integers(0, 4)) else steps - 1  # the sum, or a partial sum
        buffers = [f"buffer {n('x')}: f64[{steps},{rows},{inner}] global input",
                   f"buffer {n('w')}: f64[{steps},{inner},{cols}] global input",
                   f"buffer {n('acc')}: f64[{steps + 1},{rows},{cols}] global temp",
                   f"buffer {n('t')}: f64[{steps},{rows},{cols}] global temp",
                   f"buffer {n('u')}: f64[{steps},{rows},{cols}] global temp",
                   f"buffer {n('y')}: f64[1,{rows},{cols}] global output"]
        inputs = {n("x"): _values((steps, rows, inner)), n("w"): _values((steps, inner, cols))}
        body = [f"stage {n('zero')}() device {{ {n('acc')}[0, {box}] = 0.0 }}"] if draw(st.integers(0, 3)) else []
        body.append(f"""for r in 0:{steps} sequential host {{
          stage {n('mm')}() device {{ {n('t')}[r, {box}] = gemm({n('x')}[r, 0:{rows}, 0:{inner}], {n('w')}[{weights}, 0:{inner}, 0:{cols}]) }}
          stage {n('add')}() device {{ {n('u')}[r, {box}] = add({n('acc')}[r, {box}], {n('t')}[r, {box}]) }}
          stage {n('next')}() device {{ {n('acc')}[r + 1, {box}] = copy({n('u')}[r, {box}]) }}
        }}""")
        body.append(f"stage {n('out')}() device {{ {n('y')}[0, {box}] = copy({n('acc')}[{read}, {box}]) }}")
        return buffers, body, inputs

    # --- a GEMM per weight block ------------------------------------------------------------

    def heads(self):
        """`c[m, :, block d] = a[m] @ b[d]` over points m and blocks d (widen_gemms' shape), or
        not: the left operand naming d, blocks not side by side, another op beside."""
        draw, n = self.draw, self.name
        points, blocks = draw(st.integers(1, 3)), draw(st.integers(2, 3))
        rows, inner, cols = draw(st.integers(1, 2)), draw(st.integers(1, 2)), draw(st.integers(1, 2))
        left = "m" if draw(st.integers(0, 5)) else "d"
        spacing = cols if draw(st.integers(0, 5)) else cols + 1
        firsts = max(points, blocks)
        buffers = [f"buffer {n('a')}: f64[{firsts},{rows},{inner}] global input",
                   f"buffer {n('b')}: f64[{blocks},{inner},{cols}] global input",
                   f"buffer {n('c')}: f64[{points},{rows},{spacing * blocks}] global output"]
        inputs = {n("a"): _values((firsts, rows, inner)), n("b"): _values((blocks, inner, cols))}
        ops = [f"{n('c')}[m, 0:{rows}, {spacing}*d:{spacing}*d + {cols}] = "
               f"gemm({n('a')}[{left}, 0:{rows}, 0:{inner}], {n('b')}[d, 0:{inner}, 0:{cols}])"]
        if draw(st.integers(0, 5)) == 0:
            buffers.append(f"buffer {n('z')}: f64[{points},{blocks},{rows},{inner}] global output")
            ops.append(f"{n('z')}[m, d, 0:{rows}, 0:{inner}] = mul({n('a')}[m, 0:{rows}, 0:{inner}], 0.5)")
        if draw(st.integers(0, 3)):
            body = f"stage {n('k')}(m in 0:{points}, d in 0:{blocks}) device {{ {' '.join(ops)} }}"
        else:
            body = f"for m in 0:{points} parallel host {{ for d in 0:{blocks} parallel host {{ " \
                   f"stage {n('k')}() device {{ {' '.join(ops)} }} }} }}"
        return buffers, [body], inputs

    # --- a map ------------------------------------------------------------------------------

    def map(self):
        """Element-wise steps over the rows of a batch, through a temporary read twice: one stage
        of several ops (tiled when big), or a stage per op (merged when they meet point by
        point: not when the second reads the next row)."""
        draw, n = self.draw, self.name
        rows, cols = draw(st.integers(2, 6)), draw(st.integers(1, 2))
        ahead = int(draw(st.integers(0, 3)) == 0)  # reading the next point's row: stages stay apart
        buffers = [f"buffer {n('x')}: f64[{rows + 1},{cols}] global input",
                   f"buffer {n('t')}: f64[{rows + 1},{cols}] global temp",
                   f"buffer {n('y')}: f64[{rows},{cols}] global output"]
        ops = [f"{n('t')}[m, 0:{cols}] = mul({n('x')}[m, 0:{cols}], 0.5)",
               f"{n('y')}[m, 0:{cols}] = add({n('t')}[m + {ahead}, 0:{cols}], {n('t')}[m, 0:{cols}])"]
        if draw(st.booleans()):
            ops.append(f"{n('y')}[m, 0:{cols}] = mul({n('y')}[m, 0:{cols}], {n('x')}[m + 1, 0:{cols}])")
        groups = [ops] if not ahead and draw(st.booleans()) else [[op] for op in ops]
        body = [f"stage {n('last')}() device {{ {n('t')}[{rows}, 0:{cols}] = copy({n('x')}[{rows}, 0:{cols}]) }}"]
        for k, group in enumerate(groups):
            stage = f"stage {n(f'e{k}')}(%s) device {{ {' '.join(group)} }}"
            body.append(stage % f"m in 0:{rows}" if draw(st.booleans()) else
                        f"for m in 0:{rows} parallel host {{ {stage % ''} }}")
        return buffers, body, {n("x"): _values((rows + 1, cols))}

    # --- a sorted ragged scan -------------------------------------------------------------

    def ragged(self):
        draw, n = self.draw, self.name
        steps, points, cols = draw(st.integers(2, 4)), draw(st.integers(2, 3)), draw(st.integers(1, 2))
        lengths = sorted((draw(st.integers(1, steps)) for _ in range(points)), reverse=True)
        live = " + ".join(f"min(1, max(0, {k} - t))" for k in lengths)  # the points still running at step t
        buffers = [f"buffer {n('x')}: f64[{steps},{points},{cols}] global input",
                   f"buffer {n('h')}: f64[{steps + 1},{points},{cols}] global temp",
                   f"buffer {n('last')}: i64[{points}] global const = {list(lengths)}",
                   f"buffer {n('y')}: f64[{points},{cols}] global output"]
        # (with an input projection the hoist pass batches out of the loop, cut to the live points)
        projected = draw(st.booleans())
        if projected:
            buffers.append(f"buffer {n('xp')}: f64[{steps},{points},{cols}] global temp")
        source = n('xp') if projected else n('x')
        cell = f"{n('h')}[t + 1, m, 0:{cols}] = add({n('h')}[t, m, 0:{cols}], {source}[t, m, 0:{cols}])"
        if draw(st.booleans()):
            step = f"stage {n('cell')}(m in 0:{points}) device {{ {cell} }}"
        else:
            step = f"for m in 0:{points} parallel host {{ stage {n('cell')}() device {{ {cell} }} }}"
        if projected:
            proj = f"{n('xp')}[t, m, 0:{cols}] = tanh({n('x')}[t, m, 0:{cols}])"
            step = f"for m in 0:{points} parallel host {{ stage {n('proj')}() device {{ {proj} }} }} " + step
        body = [f"stage {n('init')}(m in 0:{points}) device {{ {n('h')}[0, m, 0:{cols}] = copy({n('x')}[0, m, 0:{cols}]) }}",
                f"for t in 0:{steps} sequential host active m < {live} {{ {step} }}",
                f"stage {n('out')}(m in 0:{points}) device {{ {n('y')}[m:m + 1, 0:{cols}] = "
                f"gather({n('h')}[0:{steps + 1}, m, 0:{cols}], {n('last')}[m:m + 1], axis=0) }}"]
        return buffers, body, {n("x"): _values((steps, points, cols))}

    # --- a ragged map over its padded box ------------------------------------------------

    def padded(self):
        draw, n = self.draw, self.name
        points, longest, cols = draw(st.integers(1, 3)), draw(st.integers(2, 4)), draw(st.integers(1, 2))
        lengths = [draw(st.integers(1, longest)) for _ in range(points)]
        live = [j + longest * m for m in range(points) for j in range(lengths[m])]
        box, ahead, product = points * longest, int(draw(st.integers(0, 3)) == 0), draw(st.booleans())
        row = lambda buf, shift="": f"{n(buf)}[j + {longest}*m{shift}, 0:1, 0:{cols}]"  # noqa: E731
        buffers = [f"buffer {n('x')}: f64[{box + 1},1,{cols}] global input",
                   f"buffer {n('t')}: f64[{box + 1},1,{cols}] global temp",
                   f"buffer {n('rows')}: i64[{len(live)}] global const = {live}",
                   f"buffer {n('y')}: f64[{len(live)},1,{cols}] global output"]
        inputs = {n("x"): _values((box + 1, 1, cols))}
        if product:
            buffers.append(f"buffer {n('w')}: f64[{cols},{cols}] global input")
            inputs[n("w")] = _values((cols, cols))
            first = f"{row('t')} = gemm({row('x')}, {n('w')}[0:{cols}, 0:{cols}])"
        else:
            first = f"{row('t')} = tanh({row('x')})"
        body = [f"stage {n('last')}() device {{ {n('t')}[{box}, 0:1, 0:{cols}] = copy({n('x')}[{box}, 0:1, 0:{cols}]) }}",
                f"stage {n('f')}(m in 0:{points}, j in 0:{longest}) device {{ {first} }}"]
        result = n("t")
        if draw(st.booleans()):   # a second stage reading the first's rows (or the next ones)
            buffers.append(f"buffer {n('u')}: f64[{box},1,{cols}] global temp")
            shift = f" + {ahead}" if ahead else ""
            body.append(f"stage {n('g')}(m in 0:{points}, j in 0:{longest}) device {{ "
                        f"{row('u')} = add({row('t', shift)}, {row('x')}) }}")
            result = n("u")
        body.append(f"stage {n('out')}() device {{ {n('y')}[0:{len(live)}, 0:1, 0:{cols}] = "
                    f"gather({result}[0:{box + (result == n('t'))}, 0:1, 0:{cols}], {n('rows')}[0:{len(live)}], axis=0) }}")
        return buffers, body, inputs
