"""The field's recent weighting methods from torchjd (FAMO, STCH, IMTL-L, fixed weights, FairGrad,
GradVac, ConFIG, ExcessMTL): each one's update on the tiny two-task problem of
test_weighting_methods.py against its definition worked out by hand; stateful ones resume bit for
bit in the trainer; DDP refused or exact; a non-finite Jacobian of finite losses stops every
gradient method with the guard's divergence error.

The tiny problem: theta = (1, 2) shared, one head scalar per task, L_a = g_a . theta + h_a^2 = 10 and
L_b = g_b . theta + h_b^2 = 1.25 with g_a = (1, 0), g_b = (-1, 1) (conflicting).
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from mbmt.config import load_params
from mbmt.errors import ParamsError
from mbmt.training import distributed
from mbmt.training.guard import DivergedError
from mbmt.training.trainer import Trainer
from mbmt.training.weighting import GRADIENT_METHODS, WEIGHTINGS, build_weighting
from mbmt.training.weighting.base import NonFiniteGradient

from weighting_helpers import MODEL, logged, stop_in_epoch_2, trainer

TASKS = ("a", "b")
CONFLICTING = ([1.0, 0.0], [-1.0, 1.0])
ORTHOGONAL = ([1.0, 0.0], [0.0, 2.0])
NEW = ("famo", "stch", "imtl_l", "constant", "fairgrad", "gradvac", "config", "excess_mtl")


class TwoTasks(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.theta = torch.nn.Parameter(torch.tensor([1.0, 2.0]))
        self.head_a = torch.nn.Parameter(torch.tensor(3.0))
        self.head_b = torch.nn.Parameter(torch.tensor(0.5))

    def losses(self, g_a, g_b) -> dict[str, torch.Tensor]:
        return {"a": torch.tensor(g_a) @ self.theta + self.head_a ** 2,
                "b": torch.tensor(g_b) @ self.theta + self.head_b ** 2}


def run_steps(weighting, steps: int, gradients=CONFLICTING, epoch: int = 0) -> list[list[float]]:
    """theta's gradient after each of ``steps`` steps (each from a fresh model) of ``weighting``."""
    out = []
    for _ in range(steps):
        model = TwoTasks()
        weighting.prepare(model, torch.device("cpu"))
        if isinstance(weighting, tuple(GRADIENT_METHODS.values())):
            weighting.shared = None  # a fresh model: find its shared parameters again
        losses = model.losses(*gradients)
        weighting.backward(losses, epoch, global_losses=torch.stack([losses["a"], losses["b"]]).detach())
        out.append(model.theta.grad.tolist())
    return out


def test_every_new_method_is_registered_from_torchjd():
    import torchjd.aggregation
    import torchjd.scalarization

    assert set(NEW) <= set(WEIGHTINGS)
    for name in ("fairgrad", "gradvac", "config", "excess_mtl"):
        cls = GRADIENT_METHODS[name]
        assert isinstance(build_weighting(name, TASKS).aggregator, getattr(torchjd.aggregation, cls.aggregator_name))
    for name, scalarizer in (("famo", "FAMO"), ("stch", "STCH"), ("imtl_l", "IMTLL"), ("constant", "Constant")):
        assert isinstance(build_weighting(name, TASKS).scalarizer, getattr(torchjd.scalarization, scalarizer))


def test_famo_weighs_by_log_loss_and_learns_its_logits_from_the_losses_change():
    # z = softmax(0) = (1/2, 1/2); c = 1 / (z_a/L_a + z_b/L_b) = 1/0.45; the gradient of
    # c sum z_k log L_k is sum (c z_k / L_k) g_k = (1/9) g_a + (8/9) g_b (a convex combination).
    weighting = build_weighting("famo", TASKS)
    weighting.start_epoch(0)
    assert run_steps(weighting, 1) == [pytest.approx([1 / 9 - 8 / 9, 8 / 9], rel=1e-6)]
    assert weighting.logged_weights(0) == pytest.approx({"a": 0.5, "b": 0.5})
    # After the update the losses are (5, 1): delta = (log 2, log 1.25); d(z . delta)/dw at w = 0 is
    # (z_a(1 - z_a) - z_a z_b ...) = 0.25 (log 2 - log 1.25) (1, -1); Adam's first step moves each
    # logit by lr against its gradient's sign: w = (-0.025, 0.025), so z_a = 1 / (1 + e^0.05).
    weighting.after_update(torch.tensor([5.0, 1.0]), 0)
    assert weighting.scalarizer._w.tolist() == pytest.approx([-0.025, 0.025], rel=1e-5)
    assert weighting.weights(1)["a"] == pytest.approx(1 / (1 + math.exp(0.05)), rel=1e-6)
    assert build_weighting("famo", TASKS).scalarizer.weight_decay == 0.001  # the paper's regularisation


def test_stch_warms_up_on_log_losses_then_smooths_the_max_of_nadir_normalised_log_losses():
    weighting = build_weighting("stch", TASKS, mu=0.5, warmup_epochs=1)

    def grad(epoch, a, b):
        losses = {"a": torch.tensor(a, requires_grad=True), "b": torch.tensor(b, requires_grad=True)}
        weighting.total_loss(losses, epoch).backward()
        return [losses["a"].grad.item(), losses["b"].grad.item()]

    assert grad(0, 10.0, 1.25) == pytest.approx([1 / 10, 1 / 1.25])  # sum log L: 1 / L_k
    assert weighting.loss_sum is None  # epoch 0 < warm-up epoch 1: nothing recorded
    grad(1, 10.0, 1.25)
    grad(1, 6.0, 2.5)  # the warm-up epoch: nadir n = mean = (8, 1.875)
    # y = log(L / n) = (log 1/2, 0) at L = (4, 1.875); softmax(y / mu) = (0.25, 1) / 1.25 = (0.2, 0.8);
    # d/dL_k of K mu log sum exp(y / mu) = K softmax_k / L_k = 2 (0.2/4, 0.8/1.875).
    assert grad(2, 4.0, 1.875) == pytest.approx([0.1, 2 * 0.8 / 1.875], rel=1e-6)
    assert weighting.nadir.tolist() == pytest.approx([8.0, 1.875])
    loss = weighting.total_loss({"a": torch.tensor(4.0), "b": torch.tensor(1.875)}, 3)
    assert loss.item() == pytest.approx(2 * 0.5 * math.log(1.25), rel=1e-6)
    assert build_weighting("stch", TASKS).mu == 1.0 and build_weighting("stch", TASKS).warmup_epochs == 4


def test_imtl_l_learns_scales_with_the_model():
    # sum_k e^{s_k} L_k - s_k at s = 0: theta's gradient g_a + g_b; ds_k = e^{s_k} L_k - 1.
    weighting = build_weighting("imtl_l", TASKS)
    assert run_steps(weighting, 1) == [pytest.approx([0.0, 1.0])]
    assert weighting.scalarizer.log_scale.grad.tolist() == pytest.approx([9.0, 0.25])
    assert weighting.parameters() == [weighting.scalarizer.log_scale]
    assert weighting.weights(0) == {"a": 1.0, "b": 1.0}


def test_constant_weights_are_fixed_and_name_only_the_models_tasks():
    weighting = build_weighting("constant", TASKS, weights={"a": 0.3})
    assert weighting.weights(5) == {"a": 0.3, "b": 1.0}
    assert run_steps(weighting, 1) == [pytest.approx([0.3 - 1.0, 1.0])]
    with pytest.raises(ValueError, match=r"constant.weights names tasks \['c'\]"):
        build_weighting("constant", TASKS, weights={"c": 2.0})


def test_fairgrad_solves_alpha_fair_allocation():
    # Orthogonal gradients, G = diag(1, 4): G x = x^(-1/alpha). alpha = 1: x = (1, 1/2), d = (1, 1);
    # alpha = 2: x_1 = 1, 4 x_2 = x_2^(-1/2) so x_2 = 4^(-2/3), d = (1, 2 * 4^(-2/3)).
    assert run_steps(build_weighting("fairgrad", TASKS), 1, ORTHOGONAL)[0] == pytest.approx([1.0, 1.0], rel=1e-4)
    assert run_steps(build_weighting("fairgrad", TASKS, alpha=2.0), 1, ORTHOGONAL)[0] == pytest.approx(
        [1.0, 2 * 4 ** (-2 / 3)], rel=1e-4)


def test_gradvac_pulls_each_gradient_to_its_cosine_target_and_keeps_an_ema():
    # Step 1, targets 0: cos(g_a, g_b) = -1/sqrt2 < 0. For i = a: w = |g_a| (0 - phi sqrt(1 - 0)) /
    # (|g_b| sqrt(1 - 0)) = (1/sqrt2)/sqrt2 = 1/2, g_a' = g_a + g_b/2; for i = b: w = sqrt2 (1/sqrt2) / 1 = 1,
    # g_b' = g_b + g_a. Sum: 2 g_a + 1.5 g_b = (0.5, 1.5). Targets: (1 - beta) 0 + beta phi = -1/(2 sqrt2).
    weighting = build_weighting("gradvac", TASKS)
    first, second = run_steps(weighting, 2)
    assert first == pytest.approx([0.5, 1.5], rel=1e-6)
    phi, hat = -1 / math.sqrt(2), -1 / (2 * math.sqrt(2))
    # Step 2: phi < hat again; w_i = |g_i| (hat sqrt(1 - phi^2) - phi sqrt(1 - hat^2)) / (|g_j| sqrt(1 - hat^2)).
    core = (hat * math.sqrt(1 - phi ** 2) - phi * math.sqrt(1 - hat ** 2)) / math.sqrt(1 - hat ** 2)
    w_a, w_b = core / math.sqrt(2), math.sqrt(2) * core
    expected = [(1 + w_b) * 1 + (1 + w_a) * -1, (1 + w_a) * 1]  # (1 + w_b) g_a + (1 + w_a) g_b
    assert second == pytest.approx(expected, rel=1e-5)
    # The targets, saved and restored, give a fresh weighting the same next step.
    state = build_weighting("gradvac", TASKS)
    run_steps(state, 1)
    restored = build_weighting("gradvac", TASKS)
    restored.load_state_dict(state.state_dict())
    assert run_steps(restored, 1) == [pytest.approx(expected, rel=1e-5)]


def test_config_finds_the_direction_with_equal_cosines_to_every_gradient():
    # Unit rows u_a = (1, 0), u_b = (-1, 1)/sqrt2; U x = (1, 1): x = (1, 1 + sqrt2), normalised: v;
    # its length is sum_k g_k . v. Both cosines equal: u_a . v = u_b . v.
    x = torch.tensor([1.0, 1 + math.sqrt(2)], dtype=torch.float64)
    v = x / x.norm()
    length = (torch.tensor(CONFLICTING, dtype=torch.float64) @ v).sum()
    grad = torch.tensor(run_steps(build_weighting("config", TASKS), 1)[0], dtype=torch.float64)
    assert grad.tolist() == pytest.approx((length * v).tolist(), rel=1e-5)
    assert grad[0] / grad.norm() == pytest.approx(((-grad[0] + grad[1]) / math.sqrt(2) / grad.norm()).item(), rel=1e-5)


def test_excess_mtl_raises_the_weight_of_the_task_with_the_larger_excess_risk():
    # Step 1: S = g^2, h = sqrt(S) = |g|, excess w_k = sum g_k^2 / h = |g_k|_1 = (1, 2), the baseline;
    # weights = softmax(log(1/2, 1/2) + eta w) with eta = 1: softmax(1, 2).
    weighting = build_weighting("excess_mtl", TASKS, robust_step_size=1.0)
    first, second = run_steps(weighting, 2)
    z = torch.softmax(torch.tensor([1.0, 2.0], dtype=torch.float64), 0).tolist()
    assert first == pytest.approx([z[0] - z[1], z[1]], rel=1e-5)
    # Step 2: S = 2 g^2, w = |g|_1 / sqrt2, divided by the baseline: (1/sqrt2, 1/sqrt2), an equal
    # step for both, so the weights stay softmax(1, 2).
    assert second == pytest.approx(first, rel=1e-5)
    assert build_weighting("excess_mtl", TASKS).options == {"robust_step_size": 0.01, "n_warmup_steps": 0}
    # Its state (weights, squared-gradient sums, baseline, step count) saved after a step and restored
    # into a fresh weighting gives the uninterrupted second step; without it the first step's again.
    interrupted = build_weighting("excess_mtl", TASKS, robust_step_size=1.0)
    run_steps(interrupted, 1, ORTHOGONAL)
    restored = build_weighting("excess_mtl", TASKS, robust_step_size=1.0)
    restored.prepare(TwoTasks(), torch.device("cpu"))
    restored.load_state_dict(interrupted.state_dict())
    uninterrupted = build_weighting("excess_mtl", TASKS, robust_step_size=1.0)
    run_steps(uninterrupted, 1, ORTHOGONAL)
    expected = run_steps(uninterrupted, 1, CONFLICTING)
    assert run_steps(restored, 1, CONFLICTING) == expected
    assert run_steps(build_weighting("excess_mtl", TASKS, robust_step_size=1.0), 1, CONFLICTING) != expected


# --- a non-finite Jacobian of finite losses -----------------------------------------------------

@pytest.mark.parametrize("name", sorted(GRADIENT_METHODS))
def test_a_non_finite_jacobian_raises_one_error_not_the_solvers(name):
    """sqrt(u) at u = 0 is finite, its derivative is not: the losses are finite, the a-row of the
    Jacobian is not. Every gradient method stops before its solver (svd, eigh, cvxpy, scipy) sees it,
    and nothing reaches .grad."""
    model = TwoTasks()
    weighting = build_weighting(name, TASKS)
    weighting.prepare(model, torch.device("cpu"))
    losses = model.losses(*CONFLICTING)
    losses["a"] = losses["a"] + torch.sqrt(model.theta[0] - 1.0)
    assert torch.isfinite(losses["a"])
    with pytest.raises(NonFiniteGradient,
                       match=r"gradients of the task losses on the shared parameters are not finite \(tasks a"):
        if weighting.batches_per_update > 1:  # sdmgrad, modo: the update's first batch
            weighting.backward_batch(0, losses, 0)
        else:
            weighting.backward(losses, 0)
    assert model.theta.grad is None


# --- in the trainer -----------------------------------------------------------------------------

# FAMO: logits, their Adam and the recomputed losses; STCH: the nadir averaged in epoch 0 (warm-up
# 0), used from epoch 1 on; IMTL-L: learned scales in the model's optimiser. (GradVac's and
# ExcessMTL's aggregator state is checked by a state round trip above, at a fraction of the cost.)
@pytest.mark.parametrize("name, options", [
    ("famo", {}), ("stch", {"stch": {"warmup_epochs": 0}}), ("imtl_l", {})])
def test_a_resumed_run_continues_bit_for_bit(name, options, project, processed_data, tmp_path):
    processed_data()
    uninterrupted = trainer(tmp_path / "uninterrupted", weighting=name, weighting_options=options)
    uninterrupted.fit()

    stop_in_epoch_2(tmp_path / "resumed", weighting=name, weighting_options=options)
    resumed = trainer(tmp_path / "resumed", weighting=name, weighting_options=options)
    assert resumed.epoch == 1
    resumed.fit()
    for key, value in uninterrupted.module.state_dict().items():
        assert torch.equal(value, resumed.module.state_dict()[key]), key
    assert logged(resumed) == logged(uninterrupted)
    for key, value in uninterrupted.weighting.state_dict().items():
        if isinstance(value, torch.Tensor):
            assert torch.equal(value, resumed.weighting.state_dict()[key]), key
    if name == "famo":  # the logits did move, from the recomputed losses
        assert not torch.equal(resumed.weighting.scalarizer._w.detach(), torch.zeros(3))


def test_a_non_finite_jacobian_stops_training_with_the_guards_error(project, processed_data, tmp_path):
    processed_data()
    run = trainer(tmp_path / "run", weighting="cagrad")
    losses = run.global_batch_losses
    shared = next(p for p in run.module.parameters() if p.requires_grad)

    def poisoned(outputs, batch):
        values = losses(outputs, batch)
        # + sqrt(0 * sum(p)): adds 0 to the loss and nan (inf * 0) to its gradient on p
        values["depth"] = values["depth"] + torch.sqrt(shared.sum() * 0.0)
        return values

    run.global_batch_losses = poisoned
    with pytest.raises(DivergedError, match=r"gradients of the task losses on the shared parameters are not finite "
                                            r"\(tasks .*depth.*; the losses are finite\) at epoch 1 of \d+, step 1 "
                                            r"of \d+; training stopped before that update and"):
        run.fit()


def test_distributed_refused_where_not_exact():
    two_ranks = distributed.DistributedContext(torch.device("cpu"), rank=0, local_rank=0, world_size=2)
    for name, refused in (("famo", True), ("stch", True), ("fairgrad", True), ("gradvac", True), ("config", True),
                          ("excess_mtl", True), ("imtl_l", False), ("constant", False)):
        rank = SimpleNamespace(name=MODEL, context=two_ranks, compile_mode="none",
                               weighting=build_weighting(name, ("semantic", "depth")))
        if refused:
            reason = "log of its own share of the losses" if name in ("famo", "stch") else "its own share of the batch's"
            with pytest.raises(ParamsError, match=f"train.weighting: {name} is not supported on several processes "
                                                  f"\\(WORLD_SIZE 2\\): each rank would .*{reason}.*; train on one "
                                                  f"process"):
                Trainer.check_weighting_fits(rank)
        else:
            Trainer.check_weighting_fits(rank)


# --- torchjd's versions of the hand-written loss-based methods --------------------------------------

def test_torchjds_uw_and_geometric_mean_agree_with_the_projects_to_rounding_only():
    """torchjd's UW (started at the project's s = -0.5) and GeometricMean are the same definitions as
    the project's uncertainty and gls (values and gradients within float32 rounding), but not bit for
    bit (another order of operations; gls weighs by the global batch's losses for DDP): the project
    keeps its own, so that existing runs and checkpoints compute exactly what they did."""
    from torchjd.scalarization import UW, GeometricMean

    torch.manual_seed(0)
    tasks = ("a", "b", "c")
    bit_equal = []
    for _ in range(50):
        values = torch.rand(3) * 5 + 0.01
        ours, theirs = build_weighting("uncertainty", tasks), UW(3)
        theirs.log_var.data.fill_(-0.5)
        x_ours, x_theirs = values.clone().requires_grad_(), values.clone().requires_grad_()
        total_ours, total_theirs = ours.total_loss(dict(zip(tasks, x_ours)), 0), theirs(x_theirs)
        (total_ours + 0).backward()
        total_theirs.backward()
        assert total_ours.item() == pytest.approx(total_theirs.item(), rel=1e-6)
        assert x_ours.grad.tolist() == pytest.approx(x_theirs.grad.tolist(), rel=1e-6)
        assert ours.log_variance.grad.tolist() == pytest.approx(theirs.log_var.grad.tolist(), rel=1e-5, abs=1e-6)
        y_ours, y_theirs = values.clone().requires_grad_(), values.clone().requires_grad_()
        build_weighting("gls", tasks).backward(dict(zip(tasks, y_ours)), 0)
        GeometricMean()(y_theirs).backward()
        assert y_ours.grad.tolist() == pytest.approx(y_theirs.grad.tolist(), rel=1e-6)
        bit_equal.append(torch.equal(x_ours.grad, x_theirs.grad) and torch.equal(y_ours.grad, y_theirs.grad))
    assert not all(bit_equal)


def test_torchjds_dwa_differs_from_mtans_in_rounding_and_at_a_zero_loss():
    """On a 6-epoch history torchjd's DWA (float32 epoch averages of the values it was called on) gives
    the project's weights (MTAN's formula on the recorded float64 means) within float32 rounding; with a
    task whose loss two epochs ago was 0, the project's counts the task as unchanged (ratio 1) where
    torchjd's weights are not finite. So the project keeps its own DWA (docs/metrics.md)."""
    from torchjd.scalarization import DWA as TorchjdDWA

    history = [(2.5, 1.2, 0.9), (2.1, 1.1, 0.8), (1.9, 0.7, 0.79), (1.5, 0.69, 0.6), (1.4, 0.5, 0.55),
               (1.3, 0.49, 0.5)]
    tasks = ("a", "b", "c")

    def both(rows):
        ours, theirs = build_weighting("dwa", tasks, temperature=2.0), TorchjdDWA(2.0)
        for epoch, losses in enumerate(rows):
            theirs(torch.tensor(losses))  # one batch per epoch: its average is the epoch's mean
            theirs.step()
            ours.record(epoch, dict(zip(tasks, losses)))
        probe = torch.ones(3, requires_grad=True)
        theirs(probe).backward()  # d(sum lambda_k l_k)/dl_k = lambda_k
        return list(ours.weights(len(rows)).values()), probe.grad.tolist()

    ours, theirs = both(history)
    assert ours == pytest.approx(theirs, rel=1e-6) and sum(ours) == pytest.approx(3.0)
    ours, theirs = both([(2.0, 0.0, 1.0), (1.0, 0.0, 0.5)])
    assert all(math.isfinite(w) for w in ours) and not all(math.isfinite(w) for w in theirs)


def test_the_schema_accepts_every_method_and_its_options_and_names_a_bad_one():
    """`mbmt config` (mbmt.config.validate) takes every registered method, and each new option as
    published; a wrong option names its key."""
    import copy

    from mbmt.config import validate

    params = load_params(["params.yaml"])
    for name in WEIGHTINGS:
        validate({**params, "train": {**params["train"], "weighting": name}})
    options = {"famo": {"lr": 0.025, "weight_decay": 0.001}, "stch": {"mu": 1.0, "warmup_epochs": 4},
               "constant": {"weights": {"semantic": 1.0, "depth": 2.0}}, "fairgrad": {"alpha": 2.0, "max_iters": None},
               "gradvac": {"beta": 0.01, "eps": 1e-8}, "excess_mtl": {"robust_step_size": 0.01, "n_warmup_steps": 0},
               "sdmgrad": {"lr": 10.0, "momentum": 0.5, "n_iter": 20, "lambda_": 0.3}, "modo": {"gamma": 0.001, "rho": 0.1}}
    train = copy.deepcopy(params["train"])
    train["weighting_options"].update(options)
    validate({**params, "train": train})
    for name, given in options.items():  # each built with them
        assert build_weighting(name, ("semantic", "depth"), **given) is not None
    train["weighting_options"]["stch"] = {"mu": 0}
    with pytest.raises(ParamsError, match=r"train.weighting_options.stch.mu"):
        validate({**params, "train": train})
    for name, bad in (("sdmgrad", {"momentum": 1.0}), ("modo", {"gamma": 0})):
        train["weighting_options"] = {name: bad}
        with pytest.raises(ParamsError, match=rf"train.weighting_options.{name}.{next(iter(bad))}"):
            validate({**params, "train": train})
