"""MetricAccumulator against hand-computed values, in both averaging conventions."""

from __future__ import annotations

import math
import multiprocessing

import pytest
import torch

from mbmt.metrics import MetricAccumulator, histogram_median, median_of

LOG4 = math.log(4)


def logits_for(predicted: list[list[int]]) -> torch.Tensor:
    """(1,13,H,W) logits ln 4 at the predicted class: cross-entropy ln 4 if right, 2 ln 4 if wrong."""
    labels = torch.tensor([predicted])
    return torch.zeros(1, 13, *labels.shape[1:]).scatter_(1, labels[:, None], LOG4)


def semantic_batch(target, predicted):
    return {"semantic": logits_for(predicted)}, {"semantic": torch.tensor([target])}


def depth_batch(target, predicted):
    return {"depth": torch.tensor([[predicted]])}, {"depth": torch.tensor([[target]])}


def unit(angle_deg: float | None) -> list[float]:
    """A unit vector at ``angle_deg`` from (1, 0, 0) in the x-y plane; None: all-zero (missing)."""
    if angle_deg is None:
        return [0.0, 0.0, 0.0]
    angle = math.radians(angle_deg)
    return [math.cos(angle), math.sin(angle), 0.0]


def normal_batch(angles: list[float | None]):
    """Targets (1,0,0) (or missing where the angle is None), predictions rotated by the angle."""
    target = torch.tensor([unit(None if a is None else 0) for a in angles]).T[None, :, None, :]
    pred = torch.tensor([unit(0 if a is None else a) for a in angles]).T[None, :, None, :]
    return {"normal": pred.contiguous()}, {"normal": target.contiguous()}


SEMANTIC = [  # (target, prediction); the prediction 2 at the unlabelled pixel must not count
    semantic_batch([[0, 0, 1, -1]], [[0, 1, 1, 2]]),
    semantic_batch([[2, 2, 0, 1]], [[2, 0, 0, 1]]),
]
DEPTH = [  # (target, prediction); 0 = missing, where the prediction is arbitrary
    depth_batch([[1.0, 2.0, 0.0, 4.0]], [[1.5, 2.0, 7.0, 3.0]]),
    depth_batch([[2.0, 0.0, 0.0, 0.0]], [[1.0, 9.0, 9.0, 9.0]]),
]
NORMAL = [normal_batch([0, 10, None, 20, 40]), normal_batch([25, None, 45])]
EMPTY = {  # a batch without a single valid pixel
    "semantic": semantic_batch([[-1, -1]], [[3, 4]]),
    "depth": depth_batch([[0.0, 0.0]], [[1.0, 2.0]]),
    "normal": normal_batch([None, None]),
}


def accumulate(task: str, batches, averaging: str) -> dict:
    metrics = MetricAccumulator([task])
    for outputs, batch in batches:
        metrics.update(outputs, batch)
    return metrics.compute(averaging)[task]


def one_minus_cos(*angles: float) -> float:
    return sum(1 - math.cos(math.radians(a)) for a in angles) / len(angles)


def test_semantic_confusion_matrix_over_the_set():
    # Over both batches (truth, prediction): (0,0) x2, (0,1), (1,1) x2, (2,2), (2,0).
    # IoU: class 0: 2 / (2 + 1 FN + 1 FP) = 1/2, class 1: 2 / (2 + 1 FP) = 2/3, class 2: 1 / (1 + 1 FN) = 1/2;
    # classes 3..12 occur nowhere and are left out. Accuracy: 5 correct of 7 labelled pixels.
    for averaging in ("pixel", "batch"):
        result = accumulate("semantic", SEMANTIC, averaging)
        assert result["miou"] == pytest.approx((1 / 2 + 2 / 3 + 1 / 2) / 3 * 100)
        assert result["pix_acc"] == pytest.approx(5 / 7 * 100)


def test_semantic_loss_pixel_and_batch_averages():
    # Batch 1: right, wrong, right -> 4 ln 4 over 3 pixels; batch 2: right, wrong, right, right -> 5 ln 4 over 4.
    assert accumulate("semantic", SEMANTIC, "pixel")["loss"] == pytest.approx(9 / 7 * LOG4)
    assert accumulate("semantic", SEMANTIC, "batch")["loss"] == pytest.approx((4 / 3 + 5 / 4) / 2 * LOG4)


def test_class_only_predicted_or_only_true_counts_with_iou_zero():
    only_predicted = accumulate("semantic", [semantic_batch([[0, 0]], [[0, 3]])], "pixel")
    assert only_predicted["miou"] == pytest.approx((1 / 2 + 0) / 2 * 100)
    only_true = accumulate("semantic", [semantic_batch([[0, 5]], [[0, 0]])], "pixel")
    assert only_true["miou"] == pytest.approx((1 / 2 + 0) / 2 * 100)
    assert only_true["pix_acc"] == pytest.approx(50)


def test_depth_errors_pixel_and_batch_averages():
    # Errors |pred - true| on measured pixels: batch 1: 0.5, 0, 1 (true 1, 2, 4); batch 2: 1 (true 2).
    pixel = accumulate("depth", DEPTH, "pixel")
    assert pixel == pytest.approx({"loss": 2.5 / 4, "abs_err": 2.5 / 4, "rel_err": (0.5 + 0 + 0.25 + 0.5) / 4})
    batch = accumulate("depth", DEPTH, "batch")
    assert batch == pytest.approx({"loss": (1.5 / 3 + 1) / 2, "abs_err": (1.5 / 3 + 1) / 2,
                                   "rel_err": (0.75 / 3 + 0.5) / 2})


def test_normal_errors_pixel_averages():
    # Angles over the set: 0, 10, 20, 25, 40, 45 degrees (missing pixels left out).
    result = accumulate("normal", NORMAL, "pixel")
    assert result["loss"] == pytest.approx(one_minus_cos(0, 10, 20, 40, 25, 45), abs=1e-7)
    assert result["mean"] == pytest.approx(140 / 6)
    assert result["median"] == pytest.approx((20 + 25) / 2, abs=1e-3)  # histogram of 0.001 degree bins
    assert result["within_11_25"] == pytest.approx(2 / 6 * 100)
    assert result["within_22_5"] == pytest.approx(3 / 6 * 100)
    assert result["within_30"] == pytest.approx(4 / 6 * 100)


def test_normal_errors_batch_averages_mtan():
    # Batch 1: 0, 10, 20, 40 -> mean 17.5, median 15, within 50/75/75 %;
    # batch 2: 25, 45 -> mean 35, median 35, within 0/0/50 %.
    result = accumulate("normal", NORMAL, "batch")
    assert result == pytest.approx({
        "loss": (one_minus_cos(0, 10, 20, 40) + one_minus_cos(25, 45)) / 2,
        "mean": (17.5 + 35) / 2, "median": (15 + 35) / 2,
        "within_11_25": (50 + 0) / 2, "within_22_5": (75 + 0) / 2, "within_30": (75 + 50) / 2,
    }, abs=1e-6)


@pytest.mark.parametrize(("task", "batches"), [("semantic", SEMANTIC), ("depth", DEPTH), ("normal", NORMAL)])
@pytest.mark.parametrize("averaging", ["pixel", "batch"])
def test_batch_without_valid_pixels_changes_nothing(task, batches, averaging):
    with_empty = [batches[0], EMPTY[task], batches[1]]
    assert accumulate(task, with_empty, averaging) == pytest.approx(accumulate(task, batches, averaging))


@pytest.mark.parametrize("averaging", ["pixel", "batch"])
def test_set_without_valid_pixels_gives_none(averaging):
    metrics = MetricAccumulator(["semantic", "depth", "normal"])
    (s_out, s_batch), (d_out, d_batch), (n_out, n_batch) = EMPTY["semantic"], EMPTY["depth"], EMPTY["normal"]
    metrics.update({**s_out, **d_out, **n_out}, {**s_batch, **d_batch, **n_batch})
    result = metrics.compute(averaging)
    assert all(value is None for block in result.values() for value in block.values()), result


def test_output_keys_units_and_task_restriction():
    metrics = MetricAccumulator(["normal", "depth"])
    outputs, batch = DEPTH[0]
    metrics.update({**outputs, **NORMAL[0][0]}, {**batch, **NORMAL[0][1], "semantic": torch.zeros(1)})
    result = metrics.compute()
    assert list(result) == ["depth", "normal"]
    assert list(result["depth"]) == ["loss", "abs_err", "rel_err"]
    assert list(result["normal"]) == ["loss", "mean", "median", "within_11_25", "within_22_5", "within_30"]
    assert list(MetricAccumulator(["semantic"]).compute()["semantic"]) == ["loss", "miou", "pix_acc"]
    with pytest.raises(ValueError, match="averaging"):
        metrics.compute("image")
    with pytest.raises(ValueError, match="unknown tasks"):
        MetricAccumulator(["segmentation"])


def test_medians():
    assert median_of(torch.tensor([3.0, 1.0, 2.0])).item() == 2.0
    assert median_of(torch.tensor([4.0, 1.0, 3.0, 2.0])).item() == 2.5
    histogram = torch.zeros(10, dtype=torch.int64)
    histogram[1], histogram[4], histogram[8] = 1, 2, 1
    # Sorted bins 1, 4, 4, 8: the two middle values are in bin 4, read at its centre 4.5 (x width 0.1).
    assert histogram_median(histogram, 0.1) == pytest.approx(0.45)
    histogram[8] = 3  # bins 1, 4, 4, 8, 8, 8: middle values in bins 4 and 8
    assert histogram_median(histogram, 0.1) == pytest.approx((0.45 + 0.85) / 2)
    assert histogram_median(torch.zeros(5, dtype=torch.int64), 0.1) is None


def flat(result: dict) -> dict:
    return {f"{task}.{key}": value for task, block in result.items() for key, value in block.items()}


def all_tasks(i: int) -> tuple[dict, dict]:
    """Batch ``i`` of every task as one (outputs, batch)."""
    outputs, batch = {}, {}
    for task_outputs, task_batch in (SEMANTIC[i], DEPTH[i], NORMAL[i]):
        outputs.update(task_outputs)
        batch.update(task_batch)
    return outputs, batch


def _reduce_in_rank(rank: int, store: str, queue) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=2)
    metrics = MetricAccumulator(["semantic", "depth", "normal"])
    metrics.update(*all_tasks(rank))
    metrics.all_reduce()
    queue.put((rank, metrics.compute("pixel"), metrics.compute("batch")))
    dist.destroy_process_group()


def test_all_reduce_over_two_ranks_equals_one_process(tmp_path):
    single = MetricAccumulator(["semantic", "depth", "normal"])
    for i in (0, 1):
        single.update(*all_tasks(i))
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    ranks = [context.Process(target=_reduce_in_rank, args=(r, tmp_path / "store", queue)) for r in (0, 1)]
    for process in ranks:
        process.start()
    results = [queue.get(timeout=60) for _ in ranks]
    for process in ranks:
        process.join(timeout=30)
        assert process.exitcode == 0
    for _, pixel, batch in results:
        assert flat(pixel) == pytest.approx(flat(single.compute("pixel")))
        assert flat(batch) == pytest.approx(flat(single.compute("batch")))


def per_image_rows(task: str, batches) -> dict:
    """The per-image rows of ``task`` over ``batches`` of one image each (index 0, 1, ...)."""
    accumulator = MetricAccumulator([task], per_image=True)
    for index, (outputs, targets) in enumerate(batches):
        accumulator.update(outputs, {**targets, "index": torch.tensor([index])})
    return accumulator, accumulator.per_image_rows()


def test_per_image_rows_by_hand():
    import numpy as np

    _, semantic = per_image_rows("semantic", SEMANTIC)
    expected = np.zeros((2, 13, 13), dtype=np.int64)
    for image, cells in enumerate([[(0, 0), (0, 1), (1, 1)], [(2, 2), (2, 0), (0, 0), (1, 1)]]):
        for truth, predicted in cells:  # the unlabelled pixel of image 0 is not counted
            expected[image, truth, predicted] += 1
    assert semantic["index"].tolist() == [0, 1] and np.array_equal(semantic["confusion"], expected)

    _, depth = per_image_rows("depth", DEPTH)
    # Image 0: errors 0.5, 0, 1 at true depths 1, 2, 4; image 1: error 1 at true depth 2.
    assert depth["depth_abs_sum"].tolist() == [1.5, 1.0] and depth["depth_rel_sum"].tolist() == [0.75, 0.5]
    assert depth["depth_count"].tolist() == [3, 1]

    _, normal = per_image_rows("normal", NORMAL)
    assert normal["normal_angle_sum"] == pytest.approx([70.0, 70.0]) and normal["normal_count"].tolist() == [4, 2]
    assert normal["normal_within"].tolist() == [[2, 3, 3], [0, 0, 1]]  # < 11.25, < 22.5, < 30 degrees
    assert set(normal) == {"index", "normal_angle_sum", "normal_count", "normal_within"}


@pytest.mark.parametrize(("task", "batches"), [("semantic", SEMANTIC), ("depth", DEPTH), ("normal", NORMAL)])
def test_summed_per_image_rows_give_the_pixel_averaged_metrics(task, batches):
    from mbmt.metrics import SUMMABLE_METRICS, metrics_from_sums

    accumulator, rows = per_image_rows(task, batches)
    split = accumulator.compute("pixel")[task]
    summed = metrics_from_sums({key: value.sum(0) for key, value in rows.items() if key != "index"})[task]
    assert list(summed) == list(SUMMABLE_METRICS[task])
    for key, value in summed.items():
        assert float(value) == pytest.approx(split[key], rel=1e-12), key


def test_per_image_rows_need_the_option():
    with pytest.raises(ValueError, match="per_image=True"):
        MetricAccumulator(["depth"]).per_image_rows()


def test_batch_images_groups_the_stream_of_updates_by_hand():
    """batch_images=2 over three one-image updates: the batches are images {0, 1} and {2}."""
    images = [([[1.0, 2.0]], [[1.5, 2.0]]), ([[4.0, 0.0]], [[3.0, 9.0]]), ([[2.0, 0.0]], [[1.0, 9.0]])]
    metrics = MetricAccumulator(["depth"], batch_images=2)
    for target, predicted in images:
        metrics.update(*depth_batch(target, predicted))
    # {0, 1}: absolute errors 0.5, 0, 1 over 3 valid pixels -> 0.5; {2}: 1 -> 1.
    assert metrics.compute("batch")["depth"]["abs_err"] == pytest.approx((0.5 + 1.0) / 2)
    assert metrics.compute("pixel")["depth"]["abs_err"] == pytest.approx(2.5 / 4)
    # Without batch_images each update is a batch: 0.5 / 2, 1, 1.
    assert accumulate("depth", [depth_batch(t, p) for t, p in images], "batch")["abs_err"] == pytest.approx(2.25 / 3)


def random_stream(count: int) -> tuple[dict, dict]:
    """``count`` images of every task, with unlabelled, missing-depth and missing-normal pixels."""
    generator = torch.Generator().manual_seed(5)
    shape = (count, 3, 4)
    semantic = torch.randint(-1, 13, shape, generator=generator)
    depth = torch.rand(count, 1, 3, 4, generator=generator) * (torch.rand(count, 1, 3, 4, generator=generator) > 0.2)
    normal = torch.nn.functional.normalize(torch.randn(count, 3, 3, 4, generator=generator), dim=1)
    normal = normal * (torch.rand(count, 1, 3, 4, generator=generator) > 0.2)
    outputs = {"semantic": torch.randn(count, 13, 3, 4, generator=generator),
               "depth": torch.rand(count, 1, 3, 4, generator=generator),
               "normal": torch.randn(count, 3, 3, 4, generator=generator)}
    return outputs, {"semantic": semantic, "depth": depth, "normal": normal}


@pytest.mark.parametrize("loader_batch", [1, 2, 3, 4, 7])
def test_batch_images_do_not_depend_on_the_batches_updates_come_in(loader_batch):
    """The batch averages of runs of 2 images equal those of updates of 2 images (the last one
    shorter), whatever batches the images arrive in; the pixel averages do not change."""
    outputs, targets = random_stream(7)
    tasks = ("semantic", "depth", "normal")

    def fed(batch: int, **options) -> MetricAccumulator:
        metrics = MetricAccumulator(tasks, **options)
        for start in range(0, 7, batch):
            part = slice(start, start + batch)
            metrics.update({t: v[part] for t, v in outputs.items()}, {t: v[part] for t, v in targets.items()})
        return metrics

    expected, grouped = fed(2), fed(loader_batch, batch_images=2)
    assert expected.compute("batch").keys() == grouped.compute("batch").keys()
    for averaging, reference in (("batch", expected), ("pixel", fed(loader_batch))):
        want, got = flat(reference.compute(averaging)), flat(grouped.compute(averaging))
        assert got == pytest.approx(want, rel=1e-12, abs=1e-12), averaging
    assert int(grouped.state["depth.batches"]) == 4  # 3 pairs and the last image
