"""stacked_lstm: the program nests fold(layers) > map(batch) > scan(time) with one fused gate GEMM pair."""

from examples import stacked_lstm as m


def test_nest_is_fold_over_map_over_scan():
    p = m.model.trace(*m.inputs("small"))
    ops = [e.op for e in p.body.eqns]
    assert ops[-1] == "fold" and "zip" in ops
    fold = p.body.eqns[-1]
    (map_eqn,) = [e for e in fold.regions[0].eqns if e.op == "map"]
    (scan,) = [e for e in map_eqn.regions[0].eqns if e.op == "scan"]
    cell_ops = [e.op for e in scan.regions[0].eqns]
    # one projection per operand (x @ W, h @ U) for all four gates at once
    assert cell_ops.count("matmul") == 2
    assert cell_ops.count("sigmoid") == 3 and cell_ops.count("tanh") == 2
