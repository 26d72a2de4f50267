"""The weighting methods beyond DWA: each one's update on a tiny two-task problem against its
definition worked out by hand, and each one in the trainer (resumed runs continue bit for bit,
bf16, the finiteness guard, DistributedDataParallel refused or averaged, torch.compile refused).

The tiny problem: a shared parameter theta = (1, 2) and one head scalar per task,
L_a = g_a . theta + h_a^2 and L_b = g_b . theta + h_b^2, so the tasks' gradients on theta are the
constant vectors g_a and g_b, and each head's gradient is 2 h from its own task only.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from mbmt.errors import ParamsError
from mbmt.training import distributed
from mbmt.training.guard import DivergedError
from mbmt.training.trainer import Trainer
from mbmt.training.weighting import (
    GRADIENT_METHODS,
    WEIGHTINGS,
    GradientWeighting,
    build_weighting,
    leaf_parameters,
    weighting_from_params,
)

from weighting_helpers import MODEL, logged, stop_in_epoch_2, trainer

TASKS = ("a", "b")
CONFLICTING = ([1.0, 0.0], [-1.0, 1.0])  # g_a . g_b = -1
ORTHOGONAL = ([1.0, 0.0], [0.0, 2.0])
# The mean (-0.5, 0.25) lies outside the dual cone {x: g_a.x >= 0, g_b.x >= 0} = {x1 >= 0, x2 >= 4 x1}
# (g_a.mean = -0.5): a projection onto the cone acts.
OUTSIDE = ([1.0, 0.0], [-2.0, 0.5])


class TwoTasks(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.theta = torch.nn.Parameter(torch.tensor([1.0, 2.0]))
        self.head_a = torch.nn.Parameter(torch.tensor(3.0))
        self.head_b = torch.nn.Parameter(torch.tensor(0.5))

    def losses(self, g_a, g_b) -> dict[str, torch.Tensor]:
        return {"a": torch.tensor(g_a) @ self.theta + self.head_a ** 2,
                "b": torch.tensor(g_b) @ self.theta + self.head_b ** 2}


def step(name: str, gradients=CONFLICTING, **options) -> tuple[list[float], TwoTasks, dict[str, float]]:
    """One step of weighting ``name``: (theta's gradient, the model, the step's logged weights)."""
    model = TwoTasks()
    weighting = build_weighting(name, TASKS, **options)
    weighting.prepare(model, torch.device("cpu"))
    weighting.start_epoch(0)
    losses = model.losses(*gradients)
    weighting.backward(losses, 0, global_losses=torch.stack([losses["a"], losses["b"]]).detach())
    return model.theta.grad.tolist(), model, weighting.logged_weights(0)


def test_every_method_of_the_issue_is_registered_and_gradient_methods_come_from_torchjd():
    assert set(WEIGHTINGS) == {"dwa", "equal", "uncertainty", "gls", "upgrad", "mgda", "pcgrad", "cagrad", "nash_mtl",
                               "imtl_g", "aligned_mtl", "graddrop", "dualproj", "random", "famo", "stch", "imtl_l",
                               "constant", "fairgrad", "gradvac", "config", "excess_mtl", "sdmgrad", "modo"}
    import torchjd.aggregation

    for name, cls in GRADIENT_METHODS.items():
        aggregator = build_weighting(name, TASKS).aggregator
        assert isinstance(aggregator, getattr(torchjd.aggregation, cls.aggregator_name)), name
    with pytest.raises(ParamsError, match="train.weighting: unknown weighting 'gradnorm'"):
        build_weighting("gradnorm", TASKS)
    with pytest.raises(ValueError, match="has no options"):
        build_weighting("pcgrad", TASKS, c=0.4)


# sdmgrad and modo update from three batches: tests/test_weighting_sdmgrad_modo.py checks their heads.
@pytest.mark.parametrize("name", sorted(n for n in GRADIENT_METHODS if GRADIENT_METHODS[n].batches_per_update == 1))
def test_heads_get_their_own_tasks_gradient_only(name):
    """A gradient method balances the shared parameters; each head's gradient is 2 h of its task."""
    _, model, _ = step(name, **({"c": 0.4} if name == "cagrad" else {}))
    assert model.head_a.grad.item() == pytest.approx(6.0) and model.head_b.grad.item() == pytest.approx(1.0)


def test_the_shared_parameters_are_those_two_tasks_reach():
    model = TwoTasks()
    losses = model.losses(*CONFLICTING)
    assert leaf_parameters(losses["a"]) == {model.theta, model.head_a}
    weighting = build_weighting("upgrad", TASKS)
    weighting.prepare(model, torch.device("cpu"))
    weighting.split_parameters([losses["a"], losses["b"]])
    assert weighting.shared == [model.theta] and weighting.specific == [model.head_a, model.head_b]


def test_pcgrad_projects_each_conflicting_gradient_on_the_others_normal_plane():
    # g_a' = g_a - (g_a.g_b)/|g_b|^2 g_b = (1,0) + 1/2 (-1,1) = (0.5, 0.5)
    # g_b' = g_b - (g_b.g_a)/|g_a|^2 g_a = (-1,1) + (1,0) = (0, 1); PCGrad sums them: (0.5, 1.5)
    grad, _, weights = step("pcgrad")
    assert grad == pytest.approx([0.5, 1.5])
    assert weights == pytest.approx({"a": 2.0, "b": 1.5})  # (0.5, 1.5) = 2.0 g_a + 1.5 g_b
    # Without a conflict nothing is projected: the plain sum.
    assert step("pcgrad", ORTHOGONAL)[0] == pytest.approx([1.0, 2.0])


def test_mgda_is_the_min_norm_point_of_the_gradients_hull():
    # Two gradients: alpha = (g_b - g_a).g_b / |g_a - g_b|^2 = 3/5; d = 0.6 g_a + 0.4 g_b = (0.2, 0.4),
    # where d.g_a = d.g_b = 0.2 (the minimum-norm point is equidistant in projection).
    grad, _, weights = step("mgda")
    assert grad == pytest.approx([0.2, 0.4], abs=1e-3)
    assert weights == pytest.approx({"a": 0.6, "b": 0.4}, abs=1e-3)


def test_upgrad_averages_the_gradients_projected_onto_the_dual_cone():
    # The dual cone {x: g_a.x >= 0, g_b.x >= 0} = {x1 >= 0, x2 >= x1}, between the rays (0,1) and (1,1).
    # g_a = (1,0) projects onto the ray (1,1): (0.5, 0.5); g_b = (-1,1) onto the ray (0,1): (0, 1).
    # UPGrad is their mean: (0.25, 0.75). (torchjd regularises the QP by 1e-4: agreement to 1e-3.)
    assert step("upgrad")[0] == pytest.approx([0.25, 0.75], abs=1e-3)
    # OUTSIDE: the cone {x1 >= 0, x2 >= 4 x1} lies between the rays (0,1) and (1,4). g_a = (1,0)
    # projects onto the ray (1,4): (g_a.(1,4)/17) (1,4) = (1/17, 4/17) (residual (16/17, -4/17) is
    # orthogonal to (1,4), negative on (0,1)); g_b = (-2,0.5) onto the ray (0,1): (0, 0.5) (residual
    # (-2, 0)). Their mean: (1/34, 25/68) = (0.0294, 0.3676), not the plain mean (-0.5, 0.25).
    assert step("upgrad", OUTSIDE)[0] == pytest.approx([1 / 34, 25 / 68], abs=1e-3)


def test_dualproj_projects_the_mean_gradient_onto_the_dual_cone():
    # mean (0, 0.5) already lies in the cone (x1 = 0 >= 0, x2 >= x1): unchanged.
    assert step("dualproj")[0] == pytest.approx([0.0, 0.5], abs=1e-3)
    # Orthogonal (1,0), (0,2): mean (0.5, 1) is in the cone {x1 >= 0, x2 >= 0}: unchanged.
    assert step("dualproj", ORTHOGONAL)[0] == pytest.approx([0.5, 1.0], abs=1e-3)
    # OUTSIDE: mean (-0.5, 0.25) violates g_a.x >= 0 only; its projection onto that half-plane,
    # (0, 0.25), satisfies g_b.x = 0.125 >= 0, so it is the projection onto the cone.
    assert step("dualproj", OUTSIDE)[0] == pytest.approx([0.0, 0.25], abs=1e-3)


def test_imtl_g_gives_equal_projections_on_every_unit_gradient():
    # d = w_a g_a + w_b g_b with w_a + w_b = 1 and d.u_a = d.u_b: (w_a - w_b) = (2 w_b - w_a)/sqrt 2,
    # so w_a / w_b = sqrt 2: w_a = sqrt2/(1+sqrt2), w_b = 1/(1+sqrt2).
    grad, _, weights = step("imtl_g")
    w_a, w_b = math.sqrt(2) / (1 + math.sqrt(2)), 1 / (1 + math.sqrt(2))
    assert weights == pytest.approx({"a": w_a, "b": w_b}, abs=1e-5)
    assert grad == pytest.approx([w_a - w_b, w_b], abs=1e-5)


def test_cagrad_maximises_the_worst_task_improvement_in_a_ball_around_the_mean():
    # c = 0: the ball is the mean gradient itself.
    assert step("cagrad", c=0.0)[0] == pytest.approx([0.0, 0.5], abs=1e-5)
    # c = 0.4: d maximises min(g_a.d, g_b.d) over |d - g0| <= c |g0|, g0 = (0, 0.5). Check that no
    # point of the ball (a fine polar grid) does better than torchjd's d, and that d lies in it.
    d = torch.tensor(step("cagrad", c=0.4)[0], dtype=torch.float64)
    g0, radius = torch.tensor([0.0, 0.5], dtype=torch.float64), 0.4 * 0.5
    assert (d - g0).norm() <= radius + 1e-4
    g = torch.tensor(CONFLICTING, dtype=torch.float64)
    angles = torch.linspace(0, 2 * math.pi, 3601, dtype=torch.float64)
    radii = torch.linspace(0, radius, 201, dtype=torch.float64)
    points = g0 + (radii[:, None, None] * torch.stack([angles.cos(), angles.sin()], -1)[None]).reshape(-1, 2)
    best = (points @ g.T).min(dim=1).values.max()
    assert (g @ d).min() >= best - 1e-4
    assert d.tolist() == pytest.approx([0.2, 0.5], abs=1e-3)  # by hand: the ball's point on the bisector


def test_nash_mtl_solves_the_bargaining_equation():
    # Orthogonal gradients, Gramian G = diag(1, 4): (G alpha)_i = 1/alpha_i gives alpha = (1, 1/2)
    # (torchjd solves with G / |G| and scales the constraint back by |G|), so d = (1, 1); max_norm 1
    # clips |d| to 1.
    grad, _, weights = step("nash_mtl", ORTHOGONAL, max_norm=0.0)
    assert weights["b"] / weights["a"] == pytest.approx(0.5, abs=1e-3)
    assert grad[0] / grad[1] == pytest.approx(1.0, abs=1e-3)
    assert weights["a"] == pytest.approx(1.0, rel=1e-3) and grad == pytest.approx([1.0, 1.0], rel=1e-3)
    assert step("nash_mtl", ORTHOGONAL)[0] == pytest.approx([1 / math.sqrt(2)] * 2, abs=1e-3)


def test_aligned_mtl_aligns_the_gradients_to_the_smallest_singular_value():
    # Orthogonal rows of norms 1 and 2: singular values 1 and 2; aligned to sigma_min = 1 both
    # become unit vectors (1,0) and (0,1); their mean: (0.5, 0.5).
    assert step("aligned_mtl", ORTHOGONAL)[0] == pytest.approx([0.5, 0.5], abs=1e-5)


def test_graddrop_keeps_the_sign_every_task_agrees_on():
    # Per coordinate P = (1 + sum g / sum |g|) / 2: 1 where all are positive (positive parts kept),
    # 0 where all are negative (negative parts kept): the plain sum, whatever the random draw.
    assert step("graddrop", ([1.0, -1.0], [2.0, -3.0]))[0] == pytest.approx([3.0, -4.0])
    assert step("graddrop", ([1.0, -1.0], [2.0, -3.0]))[2] == {}  # no task weights to log


def test_random_weighting_is_a_softmax_of_normal_draws():
    torch.manual_seed(7)
    grad, _, weights = step("random")
    torch.manual_seed(7)
    expected = torch.softmax(torch.randn(2), dim=0)
    assert weights == pytest.approx({"a": expected[0].item(), "b": expected[1].item()}, abs=1e-6)
    assert grad == pytest.approx([expected[0].item() - expected[1].item(), expected[1].item()], abs=1e-6)


def test_uncertainty_weighting_learns_log_variances():
    # total = sum L_k / (2 e^s_k) + s_k / 2 with s = -0.5: lambda = e^0.5 / 2; dtotal/ds_k = -lambda L_k + 1/2.
    model = TwoTasks()
    weighting = build_weighting("uncertainty", TASKS)
    losses = model.losses(*CONFLICTING)  # L_a = 1 + 9 = 10, L_b = 1 + 0.25 = 1.25
    weighting.backward(losses, 0)
    lam = math.exp(0.5) / 2
    assert weighting.weights(0) == pytest.approx({"a": lam, "b": lam})
    assert model.theta.grad.tolist() == pytest.approx([lam * (1 - 1), lam * (0 + 1)])
    assert weighting.log_variance.grad.tolist() == pytest.approx([-lam * 10 + 0.5, -lam * 1.25 + 0.5])
    assert weighting.parameters() == [weighting.log_variance]
    assert build_weighting("uncertainty", TASKS, initial_log_variance=0.0).weights(0) == {"a": 0.5, "b": 0.5}


def test_gls_is_the_gradient_of_the_geometric_mean():
    # L_a = 10, L_b = 1.25, G = sqrt(12.5): dG = G/(2 L_a) g_a + G/(2 L_b) g_b.
    grad, _, weights = step("gls")
    root = math.sqrt(12.5)
    assert weights == pytest.approx({"a": root / 20, "b": root / 2.5})
    assert grad == pytest.approx([root / 20 - root / 2.5, root / 2.5])
    # ... which is exactly autograd's gradient of (L_a L_b)^(1/2).
    model = TwoTasks()
    weighting = build_weighting("gls", TASKS)
    weighting.total_loss(model.losses(*CONFLICTING), 0).backward()
    assert model.theta.grad.tolist() == pytest.approx(grad, rel=1e-6)


def test_options_come_from_params(tiny_params):
    train = {**tiny_params["train"], "weighting": "cagrad"}
    assert weighting_from_params(("semantic", "depth"), train).options == {"c": 0.4}
    train["weighting_options"] = {"cagrad": {"c": 0.25}}
    assert weighting_from_params(("semantic", "depth"), train).options == {"c": 0.25}
    assert weighting_from_params(("semantic",), train).name == "equal"  # one task weighs 1


# --- In the trainer -------------------------------------------------------------------------------

# Stateful methods: solver state (nash_mtl), learned weights and their Adam moments (uncertainty),
# the random generators (random, graddrop), per-step weights (gls), quadprog (upgrad).
@pytest.mark.parametrize("name", ["nash_mtl", "uncertainty", "random", "graddrop", "gls", "upgrad"])
def test_a_resumed_run_continues_bit_for_bit(name, project, processed_data, tmp_path):
    processed_data()
    uninterrupted = trainer(tmp_path / "uninterrupted", weighting=name)
    uninterrupted.fit()

    stop_in_epoch_2(tmp_path / "resumed", weighting=name)
    resumed = trainer(tmp_path / "resumed", weighting=name)
    assert resumed.epoch == 1
    resumed.fit()
    for key, value in uninterrupted.module.state_dict().items():
        assert torch.equal(value, resumed.module.state_dict()[key]), key
    assert logged(resumed) == logged(uninterrupted)
    assert torch.equal(torch.tensor(list(resumed.weighting.logged_weights(1).values())),
                       torch.tensor(list(uninterrupted.weighting.logged_weights(1).values())))
    if name == "uncertainty":
        assert torch.equal(resumed.weighting.log_variance, uninterrupted.weighting.log_variance)
        assert any("train/weight/semantic" in entry for entry in logged(resumed))


def test_gradient_methods_use_the_host_guard_and_stop_before_a_bad_update(project, processed_data, tmp_path):
    processed_data()
    run = trainer(tmp_path / "run", weighting="pcgrad", sync_every=4)
    assert run.sync_every == 1 and type(run.guard).__name__ == "HostGuard"
    assert isinstance(run.weighting, GradientWeighting)
    before = {k: v.clone() for k, v in run.module.state_dict().items()}
    losses = run.global_batch_losses

    def poisoned(outputs, batch):
        values = losses(outputs, batch)
        values["depth"] = values["depth"] * float("nan")
        return values

    run.global_batch_losses = poisoned
    with pytest.raises(DivergedError, match="depth loss is nan"):
        run.fit()
    for key, value in run.module.state_dict().items():
        if value.is_floating_point() and "running" not in key and "num_batches" not in key:
            assert torch.equal(value, before[key]), key  # no update was made


def test_gradient_methods_refuse_compile_and_several_processes(project, processed_data, tmp_path):
    processed_data()
    with pytest.raises(ParamsError, match="train.weighting: upgrad .* train.compile: none"):
        trainer(tmp_path / "compiled", weighting="upgrad", compile="default")
    # The check itself, for a rank of two processes (starting a process group is test_ddp's job).
    two_ranks = distributed.DistributedContext(torch.device("cpu"), rank=0, local_rank=0, world_size=2)
    for name, refused in (("mgda", True), ("nash_mtl", True), ("gls", False), ("uncertainty", False), ("dwa", False)):
        rank = SimpleNamespace(name=MODEL, context=two_ranks, compile_mode="none",
                               weighting=build_weighting(name, ("semantic", "depth")))
        if refused:
            with pytest.raises(ParamsError, match=f"train.weighting: {name} is not supported on several processes"):
                Trainer.check_weighting_fits(rank)
        else:
            Trainer.check_weighting_fits(rank)


def test_a_gradient_method_under_bf16_autocast_gives_bf16_rounded_updates():
    """bf16 activations: the Jacobian and the aggregate stay float32 parameters' gradients, within
    a few of bf16's roundings of the float32 ones.

    bf16 keeps 8 significant bits: one rounding moves a value by at most u = 2^-8 (3.9e-3) of it.
    A gradient here passes about four of them (the input, the weights, the activations, the output
    gradient), so each parameter's gradient is compared in norm against 4 u of its float32 norm
    (measured: at most 0.94 u). In norm: elements that are sums cancelling to ~0 may differ by
    more than u of themselves (here up to 0.11) while within u of the gradient."""
    torch.manual_seed(0)
    layers = [torch.nn.Linear(8, 8), torch.nn.Linear(8, 1), torch.nn.Linear(8, 1)]
    x = torch.randn(16, 8)

    def grads(autocast: bool) -> list[torch.Tensor]:
        for layer in layers:
            layer.zero_grad(set_to_none=True)
        module = torch.nn.ModuleList(layers)
        weighting = build_weighting("upgrad", TASKS)
        weighting.prepare(module, torch.device("cpu"))
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            features = torch.relu(layers[0](x))
            outputs = [layers[1](features), layers[2](features)]
        losses = {"a": outputs[0].float().pow(2).mean(), "b": (outputs[1].float() - 1).pow(2).mean()}
        weighting.backward(losses, 0)
        return [p.grad.clone() for p in module.parameters()]

    for exact, rounded in zip(grads(False), grads(True), strict=True):
        assert rounded.dtype == torch.float32 and torch.isfinite(rounded).all()
        assert (rounded - exact).norm() <= 4 * 2.0 ** -8 * exact.norm()


def test_quadprog_solves_after_snakemakes_pulp_loaded_highs():
    """pulp (imported by Snakemake) puts HiGHS's extension, which exports its own ``dot``, into the
    global symbol scope; a quadprog loaded after it crashed on its first solve (segmentation fault)
    until mbmt loads quadprog with RTLD_DEEPBIND. In a fresh process, pulp first."""
    import sys

    import subprocesses

    code = ("import pulp, torch\n"
            "from mbmt.training.weighting import build_weighting\n"
            "aggregate = build_weighting('upgrad', ('a', 'b')).aggregator\n"
            "print(aggregate(torch.tensor([[1.0, 0.0], [-1.0, 1.0]])).tolist())\n")
    result = subprocesses.run([sys.executable, "-c", code], timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert [round(v, 3) for v in eval(result.stdout)] == [0.25, 0.75]
