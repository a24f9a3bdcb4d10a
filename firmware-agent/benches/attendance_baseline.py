#!/usr/bin/env python3
"""The attendance pipeline as a user could write it with onnxruntime and OpenCV.

The baseline the agent's benchmark compares itself with: the same models and the
same steps (decode, detect, landmarks, 5-point alignment, embedding, 1:N match).

    attendance_baseline.py MODELS_DIR --time IMAGE [IMAGE ...] [--repeat N]
            [--smallest-face PIXELS] [--liveness MIN_SCORE] [--threads N]
        prints one JSON line: mean milliseconds per stage and frame over N
        runs of the images in turn (a camera's frames, when there are
        several), each frame's total, and the faces found in the last as
        [left, top, right, bottom, score]; with --smallest-face the detector
        sees the frame in the agent's overlapping tiles, with --liveness each
        face is checked before it is embedded and refused below MIN_SCORE, and --threads gives ONNX
        Runtime that many threads a model
    attendance_baseline.py MODELS_DIR --similarity IMAGE_A IMAGE_B
        prints the cosine similarity of the two photos' largest faces
"""
import argparse
import json
import time

import cv2
import numpy as np
import onnxruntime as ort

TEMPLATE = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]],
    dtype=np.float32,
)


# The detector's tiling, as the agent's attendance/detect.rs does it.
DETECTABLE_FACE = 14
TILE_MIN_SCORE = 0.9
EDGE_TOLERANCE = 4.0


def spread(length, side, overlap):
    if length <= side:
        return [0]
    step = side - overlap
    count = -(-(length - side) // step) + 1
    return [(length - side) * i // (count - 1) for i in range(count)]


def tile_levels(width, height, smallest_face):
    """[(tiles as (left, top, width, height), widest face or None)], level by level."""
    tile_width = smallest_face * (320 // DETECTABLE_FACE)
    tile_width = -(-tile_width // 4) * 4
    if width <= tile_width and height <= tile_width * 3 // 4:
        return [([(0, 0, width, height)], None)]
    levels = []
    while True:
        fitted_width = max(min(tile_width, width, height * 4 // 3), 1)
        fitted_height = min(-(-fitted_width * 3 // 4), height)
        last = fitted_width < tile_width
        columns = spread(width, fitted_width, fitted_width // 4)
        rows = spread(height, fitted_height, fitted_width // 3)
        tiles = [(left, top, fitted_width, fitted_height) for top in rows for left in columns]
        levels.append((tiles, None if last else fitted_width // 4))
        if last:
            return levels
        tile_width *= 2


def iou(a, b):
    inter = overlap(a, b)
    union = area(a) + area(b) - inter
    return inter / union if union > 0 else 0.0


def overlap(a, b):
    return max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))


def area(b):
    return max(0.0, b[2] - b[0]) * max(0.0, b[3] - b[1])


class Pipeline:
    def __init__(self, models, threads=1):
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        load = lambda name: ort.InferenceSession(f"{models}/{name}", options, providers=["CPUExecutionProvider"])
        self.detector = load("fr_detect.onnx")
        self.onet = load("onet.onnx")
        self.feature = load("fr_feature.onnx")
        self.liveness_model = load("fr_liveness.onnx")

    def detect_tiles(self, bgr, smallest_face):
        """Boxes from every tile, merged as the agent merges them."""
        height, width = bgr.shape[:2]
        levels = tile_levels(width, height, smallest_face)
        min_score = 0.7 if len(levels) == 1 and len(levels[0][0]) == 1 else TILE_MIN_SCORE
        candidates = []
        for tiles, widest in levels:
            for left, top, w, h in tiles:
                crop = bgr[top : top + h, left : left + w]
                for box, score in self.detector_boxes(crop, min_score):
                    box = box * np.array([w, h, w, h], dtype=np.float32) + np.array([left, top, left, top], dtype=np.float32)
                    if widest is not None and box[2] - box[0] > widest:
                        continue
                    tolerance = EDGE_TOLERANCE * w / 320
                    cut = (
                        (left > 0 and box[0] <= left + tolerance)
                        or (top > 0 and box[1] <= top + tolerance)
                        or (left + w < width and box[2] >= left + w - tolerance)
                        or (top + h < height and box[3] >= top + h - tolerance)
                    )
                    candidates.append((box, score, cut))
        candidates.sort(key=lambda c: (c[2], -c[1]))
        kept = []
        for box, score, cut in candidates:
            if not any(iou(k, box) > 0.4 or (cut and overlap(k, box) > 0.5 * area(box)) for k, _ in kept):
                kept.append((box, score))
        return sorted(kept, key=lambda k: -k[1])

    def detector_boxes(self, bgr, min_score):
        """Boxes in [0, 1] of `bgr` scoring above `min_score`, before any merging."""
        small = cv2.cvtColor(cv2.resize(bgr, (320, 240)), cv2.COLOR_BGR2RGB)
        blob = ((small.astype(np.float32) - 127.0) / 128.0).transpose(2, 0, 1)[None]
        scores, boxes = self.detector.run(["scores", "boxes"], {"input": blob})
        scores, boxes = scores[0, :, 1], boxes[0]
        keep = scores > min_score
        return list(zip(boxes[keep], scores[keep].tolist()))

    def liveness(self, rgb, box):
        """The chance that the face in `box` is live, from the box grown 2.7 times about its centre."""
        height, width = rgb.shape[:2]
        w, h = max(box[2] - box[0], 1.0), max(box[3] - box[1], 1.0)
        grow = min(2.7, (width - 1) / w, (height - 1) / h)
        gw, gh = w * grow, h * grow
        left = int(min(max((box[0] + box[2]) / 2 - gw / 2, 0), max(width - 1 - gw, 0)))
        top = int(min(max((box[1] + box[3]) / 2 - gh / 2, 0), max(height - 1 - gh, 0)))
        crop = cv2.resize(rgb[top : top + int(gh), left : left + int(gw)], (128, 128))
        blob = crop.astype(np.float32).transpose(2, 0, 1)[None]
        logits = self.liveness_model.run(None, {self.liveness_model.get_inputs()[0].name: blob})[0][0]
        odds = np.exp(logits - logits.max())
        return float(odds[0] / odds.sum())

    def detect(self, bgr):
        height, width = bgr.shape[:2]
        small = cv2.cvtColor(cv2.resize(bgr, (320, 240)), cv2.COLOR_BGR2RGB)
        blob = ((small.astype(np.float32) - 127.0) / 128.0).transpose(2, 0, 1)[None]
        scores, boxes = self.detector.run(["scores", "boxes"], {"input": blob})
        scores, boxes = scores[0, :, 1], boxes[0]
        keep = scores > 0.7
        boxes = boxes[keep] * np.array([width, height, width, height], dtype=np.float32)
        scores = scores[keep]
        xywh = [[float(b[0]), float(b[1]), float(b[2] - b[0]), float(b[3] - b[1])] for b in boxes]
        picked = cv2.dnn.NMSBoxes(xywh, scores.tolist(), 0.7, 0.4)
        return [(boxes[i], float(scores[i])) for i in np.array(picked).reshape(-1)]

    def landmarks(self, rgb, box):
        x1, y1, x2, y2 = box
        side = max(x2 - x1, y2 - y1)
        cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
        left, top = cx - side / 2, cy - side / 2
        matrix = np.array([[48 / side, 0, -left * 48 / side], [0, 48 / side, -top * 48 / side]], dtype=np.float32)
        crop = cv2.warpAffine(rgb, matrix, (48, 48), flags=cv2.INTER_AREA)
        blob = ((crop.astype(np.float32) - 127.5) * 0.0078125).transpose(1, 0, 2)[None]
        _, points, _ = self.onet.run(None, {"input_3": blob})
        points = points[0]
        return np.stack([left + points[:5] * side, top + points[5:] * side], axis=1).astype(np.float32)

    def align(self, rgb, points):
        matrix, _ = cv2.estimateAffinePartial2D(points, TEMPLATE, method=cv2.LMEDS)
        return cv2.warpAffine(rgb, matrix, (112, 112), flags=cv2.INTER_LINEAR)

    def embed(self, face):
        blob = ((face.astype(np.float32) - 127.0) / 128.0).transpose(2, 0, 1)[None]
        vector = self.feature.run(None, {"input": blob})[0][0]
        return vector / np.linalg.norm(vector)


def largest_face_embedding(pipeline, path):
    bgr = cv2.imread(path, cv2.IMREAD_COLOR)
    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    faces = pipeline.detect(bgr)
    box, _ = max(faces, key=lambda f: (f[0][2] - f[0][0]) * (f[0][3] - f[0][1]))
    return pipeline.embed(pipeline.align(rgb, pipeline.landmarks(rgb, box)))


def time_stages(pipeline, paths, repeat, gallery, smallest_face=None, liveness=None):
    frames = [open(path, "rb").read() for path in paths]
    totals = {"decode": 0.0, "detect": 0.0, "liveness": 0.0, "align": 0.0, "embed": 0.0, "match": 0.0}
    frame_totals = []
    faces = 0
    for data in [data for _ in range(repeat) for data in frames]:
        started = t = time.perf_counter()
        bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        totals["decode"] += time.perf_counter() - t
        t = time.perf_counter()
        found = pipeline.detect(bgr) if smallest_face is None else pipeline.detect_tiles(bgr, smallest_face)
        totals["detect"] += time.perf_counter() - t
        faces = len(found)
        for box, _ in found:
            if liveness is not None:
                t = time.perf_counter()
                live = pipeline.liveness(rgb, box) >= liveness
                totals["liveness"] += time.perf_counter() - t
                if not live:
                    continue
            t = time.perf_counter()
            aligned = pipeline.align(rgb, pipeline.landmarks(rgb, box))
            totals["align"] += time.perf_counter() - t
            t = time.perf_counter()
            vector = pipeline.embed(aligned)
            totals["embed"] += time.perf_counter() - t
            t = time.perf_counter()
            best = int(np.argmax(gallery @ vector))
            totals["match"] += time.perf_counter() - t
        frame_totals.append(1000.0 * (time.perf_counter() - started))
    result = {stage: 1000.0 * seconds / (repeat * len(frames)) for stage, seconds in totals.items()}
    result["total"] = sum(result.values())
    result["faces"] = faces
    result["frames"] = frame_totals
    result["boxes"] = [[*map(float, box), score] for box, score in found]
    return result


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("models")
    parser.add_argument("--time", nargs="+", metavar="IMAGE")
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--similarity", nargs=2, metavar="IMAGE")
    parser.add_argument("--smallest-face", type=int)
    parser.add_argument("--liveness", type=float, metavar="MIN_SCORE")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    pipeline = Pipeline(args.models, args.threads)
    if args.similarity:
        a, b = (largest_face_embedding(pipeline, p) for p in args.similarity)
        print(json.dumps({"similarity": float(a @ b)}))
    if args.time:
        rng = np.random.default_rng(7)
        gallery = rng.standard_normal((2000, 512)).astype(np.float32)
        gallery /= np.linalg.norm(gallery, axis=1, keepdims=True)
        options = {"smallest_face": args.smallest_face, "liveness": args.liveness}
        time_stages(pipeline, args.time[:1], 2, gallery, **options)
        print(json.dumps(time_stages(pipeline, args.time, args.repeat, gallery, **options)))


if __name__ == "__main__":
    main()
