#!/usr/bin/env python3
"""The attendance pipeline as a user could write it with onnxruntime and OpenCV.

The baseline the agent's benchmark compares itself with: the same models and the
same steps (decode, detect, landmarks, 5-point alignment, embedding, 1:N match).

    attendance_baseline.py MODELS_DIR --time IMAGE [IMAGE ...] [--repeat N]
        prints one JSON line: mean milliseconds per stage and frame over N
        runs of the images in turn (a camera's frames, when there are
        several), and the faces found in the last as [left, top, right,
        bottom, score]
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


class Pipeline:
    def __init__(self, models):
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        load = lambda name: ort.InferenceSession(f"{models}/{name}", options, providers=["CPUExecutionProvider"])
        self.detector = load("fr_detect.onnx")
        self.onet = load("onet.onnx")
        self.feature = load("fr_feature.onnx")

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


def time_stages(pipeline, paths, repeat, gallery):
    frames = [open(path, "rb").read() for path in paths]
    totals = {"decode": 0.0, "detect": 0.0, "align": 0.0, "embed": 0.0, "match": 0.0}
    faces = 0
    for data in [data for _ in range(repeat) for data in frames]:
        t = time.perf_counter()
        bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        totals["decode"] += time.perf_counter() - t
        t = time.perf_counter()
        found = pipeline.detect(bgr)
        totals["detect"] += time.perf_counter() - t
        faces = len(found)
        for box, _ in found:
            t = time.perf_counter()
            aligned = pipeline.align(rgb, pipeline.landmarks(rgb, box))
            totals["align"] += time.perf_counter() - t
            t = time.perf_counter()
            vector = pipeline.embed(aligned)
            totals["embed"] += time.perf_counter() - t
            t = time.perf_counter()
            best = int(np.argmax(gallery @ vector))
            totals["match"] += time.perf_counter() - t
    result = {stage: 1000.0 * seconds / (repeat * len(frames)) for stage, seconds in totals.items()}
    result["total"] = sum(result.values())
    result["faces"] = faces
    result["boxes"] = [[*map(float, box), score] for box, score in found]
    return result


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("models")
    parser.add_argument("--time", nargs="+", metavar="IMAGE")
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--similarity", nargs=2, metavar="IMAGE")
    args = parser.parse_args()
    pipeline = Pipeline(args.models)
    if args.similarity:
        a, b = (largest_face_embedding(pipeline, p) for p in args.similarity)
        print(json.dumps({"similarity": float(a @ b)}))
    if args.time:
        rng = np.random.default_rng(7)
        gallery = rng.standard_normal((2000, 512)).astype(np.float32)
        gallery /= np.linalg.norm(gallery, axis=1, keepdims=True)
        time_stages(pipeline, args.time[:1], 2, gallery)
        print(json.dumps(time_stages(pipeline, args.time, args.repeat, gallery)))


if __name__ == "__main__":
    main()
