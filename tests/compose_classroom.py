#!/usr/bin/env python3
"""Composes the classroom a camera above the panel sees: forty seats in five
rows, the five enrolled test people repeated, at 4K and 1080p.

    compose_classroom.py FACES_DIR OUT_DIR [--seed N]

FACES_DIR is the shared test faces (`testdata/faces`, whose `enroll/` holds one
photo per person). OUT_DIR receives `classroom_4k.jpg`, `classroom_1080p.jpg`
and `classroom.json`, which says for each frame where every face is (the box
the detector draws around it, in the frame's pixels) and who it is.

The front row's faces are 140 pixels wide at 4K and the back row's 45, as a
camera above the panel sees a class of forty; the 1080p frame is the same
scene scaled down (70 to about 22 pixels). Each face gets its own lighting and
a small tilt, and sits on a patterned wall with desks. The same seed gives the
same frames, byte for byte.
"""
import argparse
import json
import math
import os

import cv2
import numpy as np

PEOPLE = ["alex_lacamoire", "biden", "kit_harington", "obama", "rose_leslie"]
# The face box the detector draws in each enrollment photo: left, top, right, bottom.
FACE_BOXES = {
    "alex_lacamoire": (293, 102, 586, 565),
    "biden": (440, 191, 691, 560),
    "kit_harington": (682, 73, 802, 233),
    "obama": (382, 90, 603, 404),
    "rose_leslie": (634, 72, 876, 380),
}
WIDTH, HEIGHT = 3840, 2160
ROWS, SEATS_PER_ROW = 5, 8
FRONT_FACE, BACK_FACE = 140, 45
# How far around the face box the pasted patch reaches, as fractions of the box.
MARGIN_SIDE, MARGIN_TOP, MARGIN_BOTTOM = 0.35, 0.3, 0.25


def background(rng):
    """A wall with a stripe pattern above rows of desks, with sensor noise."""
    y, x = np.mgrid[0:HEIGHT, 0:WIDTH].astype(np.float32)
    wall = 180 + 25 * np.sin(x / 37.0) * np.sin(y / 53.0) - 30 * y / HEIGHT
    image = np.stack([wall * 0.95, wall * 0.9, wall * 0.8], axis=-1)
    for row in range(ROWS):
        top = int(desk_line(row))
        image[top : top + 60 + 25 * (ROWS - row)] = (70 + 10 * row, 95 + 8 * row, 130)
    image += rng.normal(0, 4, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def face_width(row):
    """Front row 0 to back row ROWS - 1, evenly from FRONT_FACE to BACK_FACE."""
    return FRONT_FACE + (BACK_FACE - FRONT_FACE) * row / (ROWS - 1)


def face_centre_y(row):
    return 1750 - row * 300


def desk_line(row):
    return face_centre_y(row) + face_width(row) * 1.3


def paste(canvas, photo, box, width, centre, angle, light):
    """Pastes the face at `box` of `photo`, scaled to `width` pixels, tilted by
    `angle` degrees and lit by `light`, centred at `centre`; returns its box."""
    left, top, right, bottom = box
    scale = width / (right - left)
    crop_left = left - MARGIN_SIDE * (right - left)
    crop_top = top - MARGIN_TOP * (bottom - top)
    crop_right = right + MARGIN_SIDE * (right - left)
    crop_bottom = bottom + MARGIN_BOTTOM * (bottom - top)
    patch_w = int(round((crop_right - crop_left) * scale))
    patch_h = int(round((crop_bottom - crop_top) * scale))
    # Where the face box's centre falls in the patch.
    face_cx = ((left + right) / 2 - crop_left) * scale
    face_cy = ((top + bottom) / 2 - crop_top) * scale
    to_patch = np.array([[scale, 0, -crop_left * scale], [0, scale, -crop_top * scale]], dtype=np.float64)
    tilt = cv2.getRotationMatrix2D((face_cx, face_cy), angle, 1.0)
    matrix = tilt @ np.vstack([to_patch, [0, 0, 1]])
    patch = cv2.warpAffine(photo, matrix, (patch_w, patch_h), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REFLECT)
    patch = np.clip(patch.astype(np.float32) * light, 0, 255)
    mask = np.zeros((patch_h, patch_w), np.float32)
    cv2.ellipse(mask, (patch_w // 2, patch_h // 2), (patch_w // 2 - 1, patch_h // 2 - 1), 0, 0, 360, 1.0, -1)
    mask = cv2.GaussianBlur(mask, (0, 0), max(1.0, patch_w / 20))[..., None]
    x0, y0 = int(round(centre[0] - face_cx)), int(round(centre[1] - face_cy))
    region = canvas[y0 : y0 + patch_h, x0 : x0 + patch_w].astype(np.float32)
    canvas[y0 : y0 + patch_h, x0 : x0 + patch_w] = (region * (1 - mask) + patch * mask).astype(np.uint8)
    height = width * (bottom - top) / (right - left)
    return [centre[0] - width / 2, centre[1] - height / 2, centre[0] + width / 2, centre[1] + height / 2]


def compose(faces_dir, rng):
    photos = {p: cv2.imread(os.path.join(faces_dir, "enroll", p, f"{p}_a.jpg")) for p in PEOPLE}
    canvas = background(rng)
    seats = []
    # Back rows first, so a front pupil's head overlaps the row behind, never the reverse.
    for row in reversed(range(ROWS)):
        width = face_width(row)
        spread = WIDTH * (0.9 - 0.25 * row / (ROWS - 1))
        for seat in range(SEATS_PER_ROW):
            person = PEOPLE[(row * SEATS_PER_ROW + seat * 3 + row) % len(PEOPLE)]
            x = WIDTH / 2 + spread * ((seat + 0.5) / SEATS_PER_ROW - 0.5) + rng.uniform(-0.3, 0.3) * width
            y = face_centre_y(row) + rng.uniform(-0.2, 0.2) * width
            angle, light = rng.uniform(-10, 10), rng.uniform(0.7, 1.2)
            box = paste(canvas, photos[person], FACE_BOXES[person], width, (x, y), angle, light)
            seats.append({"person": person, "row": row, "box": [round(v, 1) for v in box]})
    return canvas, seats


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("faces_dir")
    parser.add_argument("out_dir")
    parser.add_argument("--seed", type=int, default=14)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    canvas, seats = compose(args.faces_dir, rng)
    os.makedirs(args.out_dir, exist_ok=True)
    frames = []
    for name, (width, height) in [("classroom_4k.jpg", (WIDTH, HEIGHT)), ("classroom_1080p.jpg", (1920, 1080))]:
        scale = width / WIDTH
        frame = canvas if scale == 1 else cv2.resize(canvas, (width, height), interpolation=cv2.INTER_AREA)
        cv2.imwrite(os.path.join(args.out_dir, name), frame, [cv2.IMWRITE_JPEG_QUALITY, 92])
        faces = [{**seat, "box": [round(v * scale, 1) for v in seat["box"]]} for seat in seats]
        frames.append({"file": name, "width": width, "height": height, "faces": faces})
    with open(os.path.join(args.out_dir, "classroom.json"), "w") as out:
        json.dump({"seed": args.seed, "frames": frames}, out, indent=1)


if __name__ == "__main__":
    main()
