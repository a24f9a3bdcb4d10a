#!/usr/bin/python3
"""An IP camera for the end-to-end tests: an RTSP server on loopback, through
GStreamer's RTSP server library, streaming a folder of JPEG frames.

    rtsp_server.py PORT FRAMES_DIR --codec h264|h265|vp8 [--user U --password P]
                   [--width W --height H] [--rate FPS]

FRAMES_DIR holds `frame000.jpg`, `frame001.jpg`, ..., played in a loop at RATE
frames per second, each scaled (with borders, keeping its shape) to WxH and
encoded as the codec asks: H.264 (x264enc) or H.265 (x265enc), as the cameras
schools buy send, or VP8, which no such camera sends and the agent does not
decode. With a user and password the server asks for digest authentication,
as those cameras do. The stream is at rtsp://127.0.0.1:PORT/stream.

It prints `ready rtsp://127.0.0.1:PORT/stream` once it listens, and serves
until killed. Run it with the system's Python (/usr/bin/python3), which has
the `gi` bindings (Debian: python3-gi, gir1.2-gst-rtsp-server-1.0).
"""
import argparse
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtsp", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtsp, GstRtspServer  # noqa: E402

ENCODERS = {
    "h264": "x264enc tune=zerolatency speed-preset=ultrafast key-int-max={gop} ! rtph264pay name=pay0 pt=96 config-interval=1",
    "h265": "x265enc tune=zerolatency speed-preset=ultrafast key-int-max={gop} ! rtph265pay name=pay0 pt=96 config-interval=1",
    "vp8": "vp8enc deadline=1 keyframe-max-dist={gop} ! rtpvp8pay name=pay0 pt=96",
}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("port", type=int)
    parser.add_argument("frames")
    parser.add_argument("--codec", choices=sorted(ENCODERS), default="h264")
    parser.add_argument("--user")
    parser.add_argument("--password")
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=720)
    parser.add_argument("--rate", type=int, default=5)
    args = parser.parse_args()

    Gst.init(None)
    launch = (
        f"( multifilesrc location={args.frames}/frame%03d.jpg loop=true "
        f"caps=image/jpeg,framerate={args.rate}/1 ! jpegdec ! videoconvert "
        f"! videoscale add-borders=true ! video/x-raw,width={args.width},height={args.height},"
        f"pixel-aspect-ratio=1/1 ! "
        + ENCODERS[args.codec].format(gop=args.rate)
        + " )"
    )
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(launch)
    factory.set_shared(True)

    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(args.port))
    if args.user is not None:
        auth = GstRtspServer.RTSPAuth()
        auth.set_supported_methods(GstRtsp.RTSPAuthMethod.DIGEST)
        token = GstRtspServer.RTSPToken()
        token.set_string("media.factory.role", "viewer")
        auth.add_digest(args.user, args.password or "", token)
        server.set_auth(auth)
        permissions = GstRtspServer.RTSPPermissions()
        permissions.add_permission_for_role("viewer", "media.factory.access", True)
        permissions.add_permission_for_role("viewer", "media.factory.construct", True)
        factory.set_permissions(permissions)
    server.get_mount_points().add_factory("/stream", factory)
    if server.attach(None) == 0:
        sys.exit(f"cannot listen on 127.0.0.1:{args.port}")
    print(f"ready rtsp://127.0.0.1:{args.port}/stream", flush=True)
    GLib.MainLoop().run()


if __name__ == "__main__":
    main()
