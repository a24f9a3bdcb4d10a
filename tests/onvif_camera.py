#!/usr/bin/python3
"""A fake ONVIF camera for the tests: answers WS-Discovery probes on multicast
and serves the device and media SOAP services on a loopback port.

It checks each call's WS-Security UsernameToken digest the way the ONVIF core
specification defines it, answers a wrong one with the ter:NotAuthorized fault,
and records every probe (with the TTL it arrived with) and every
SetVideoEncoderConfiguration as JSON lines in --record. With --hostile it
first answers each probe with replies a client must skip: one oversized, one
with an entity-expanding DTD, one not XML and one answering another probe.
Prints `ready PORT` once both services listen. Standard library only.
"""

import argparse
import base64
import hashlib
import json
import socket
import struct
import sys
import threading
import uuid
import xml.etree.ElementTree as ET
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SOAP = "http://www.w3.org/2003/05/soap-envelope"
WSA = "http://schemas.xmlsoap.org/ws/2004/08/addressing"
WSD = "http://schemas.xmlsoap.org/ws/2005/04/discovery"
WSSE = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
WSU = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd"
DEVICE = "http://www.onvif.org/ver10/device/wsdl"
MEDIA = "http://www.onvif.org/ver10/media/wsdl"
TT = "http://www.onvif.org/ver10/schema"
GROUP = ("239.255.255.250", 3702)
# Linux's values; this Python does not name IP_RECVTTL.
IP_RECVTTL = getattr(socket, "IP_RECVTTL", 12)

ENDPOINT = "urn:uuid:6a1c0a3e-0000-4000-8000-00000000cafe"
PROFILES = [
    # token, name, encoder token, encoding, width, height, fps, stream path
    ("Profile_1", "mainStream", "VideoEncoder_1", "H264", 1920, 1080, 25, "/Streaming/Channels/101"),
    ("Profile_2", "subStream", "VideoEncoder_2", "H265", 640, 360, 15, "/Streaming/Channels/102"),
]

args = None
record_lock = threading.Lock()
frame_rates = {encoder: fps for (_, _, encoder, _, _, _, fps, _) in PROFILES}


def record(event):
    with record_lock, open(args.record, "a", encoding="utf-8") as out:
        out.write(json.dumps(event) + "\n")


def envelope(body, header=""):
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        f'<SOAP-ENV:Envelope xmlns:SOAP-ENV="{SOAP}" xmlns:wsa="{WSA}" xmlns:d="{WSD}" '
        f'xmlns:trt="{MEDIA}" xmlns:tds="{DEVICE}" xmlns:tt="{TT}" xmlns:maker="urn:example:maker">'
        f"<SOAP-ENV:Header>{header}</SOAP-ENV:Header><SOAP-ENV:Body>{body}</SOAP-ENV:Body></SOAP-ENV:Envelope>"
    )


def probe_matches(relates_to, endpoint, padding=""):
    return envelope(
        "<d:ProbeMatches><d:ProbeMatch>"
        f"<wsa:EndpointReference><wsa:Address>{endpoint}</wsa:Address></wsa:EndpointReference>"
        "<d:Types>dn:NetworkVideoTransmitter</d:Types>"
        "<d:Scopes>onvif://www.onvif.org/type/video_encoder onvif://www.onvif.org/name/Camera%20L%E1%BB%9Bp%206A1 "
        f"onvif://www.onvif.org/hardware/DS-2CD2143G2 onvif://www.onvif.org/location/{padding}</d:Scopes>"
        f"<d:XAddrs>http://127.0.0.1:{args.http_port}/onvif/device_service</d:XAddrs>"
        "<d:MetadataVersion>1</d:MetadataVersion></d:ProbeMatch></d:ProbeMatches>",
        f"<wsa:MessageID>uuid:{uuid.uuid4()}</wsa:MessageID><wsa:RelatesTo>{relates_to}</wsa:RelatesTo>"
        f"<wsa:Action>{WSD}/ProbeMatches</wsa:Action>",
    ).encode()


def serve_discovery():
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_IP, IP_RECVTTL, 1)
    sock.bind(("", GROUP[1]))
    membership = struct.pack("4s4s", socket.inet_aton(GROUP[0]), socket.inet_aton(args.interface))
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, membership)
    return sock


def answer_probes(sock):
    while True:
        data, ancillary, _, sender = sock.recvmsg(65536, socket.CMSG_SPACE(4))
        ttl = next(
            (struct.unpack("i", value[:4])[0] for level, kind, value in ancillary
             if level == socket.IPPROTO_IP and kind == socket.IP_TTL),
            None,
        )
        try:
            root = ET.fromstring(data)
        except ET.ParseError:
            continue
        message_id = root.findtext(f"{{{SOAP}}}Header/{{{WSA}}}MessageID")
        types = root.findtext(f"{{{SOAP}}}Body/{{{WSD}}}Probe/{{{WSD}}}Types") or ""
        record({"event": "probe", "ttl": ttl, "from": sender[0], "types": types})
        if not message_id or "NetworkVideoTransmitter" not in types:
            continue
        replies = []
        if args.hostile:
            replies += [
                probe_matches(message_id, "urn:uuid:oversized", "x" * 20000),
                b'<?xml version="1.0"?><!DOCTYPE e [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;">]>'
                + probe_matches(message_id, "urn:uuid:laughs&b;").split(b"?>", 1)[1],
                b"\x00\xffnot xml at all <<<",
                probe_matches("uuid:another-probe", "urn:uuid:stale"),
            ]
        # Cameras answer twice (over each path the probe reached them by); one camera is listed once.
        replies += [probe_matches(message_id, ENDPOINT), probe_matches(message_id, ENDPOINT)]
        for reply in replies:
            sock.sendto(reply, sender)


def fault(subcode, reason):
    return envelope(
        "<SOAP-ENV:Fault><SOAP-ENV:Code><SOAP-ENV:Value>SOAP-ENV:Sender</SOAP-ENV:Value>"
        f'<SOAP-ENV:Subcode><SOAP-ENV:Value xmlns:ter="http://www.onvif.org/ver10/error">{subcode}</SOAP-ENV:Value>'
        "</SOAP-ENV:Subcode></SOAP-ENV:Code>"
        f'<SOAP-ENV:Reason><SOAP-ENV:Text xml:lang="en">{reason}</SOAP-ENV:Text></SOAP-ENV:Reason></SOAP-ENV:Fault>'
    )


def authorised(root):
    token = root.find(f"{{{SOAP}}}Header/{{{WSSE}}}Security/{{{WSSE}}}UsernameToken")
    if token is None:
        return False
    password = token.find(f"{{{WSSE}}}Password")
    if password is None or not (password.get("Type") or "").endswith("#PasswordDigest"):
        return False
    nonce = base64.b64decode(token.findtext(f"{{{WSSE}}}Nonce") or "")
    created = token.findtext(f"{{{WSU}}}Created") or ""
    expected = base64.b64encode(
        hashlib.sha1(nonce + created.encode() + args.password.encode()).digest()
    ).decode()
    return token.findtext(f"{{{WSSE}}}Username") == args.user and password.text == expected


def encoder_configuration(encoder):
    (_, name, _, encoding, width, height, _, _) = next(p for p in PROFILES if p[2] == encoder)
    return (
        f'<tt:Name>{name}</tt:Name><tt:UseCount>1</tt:UseCount><tt:Encoding>{encoding}</tt:Encoding>'
        f"<tt:Resolution><tt:Width>{width}</tt:Width><tt:Height>{height}</tt:Height></tt:Resolution>"
        f"<tt:Quality>4</tt:Quality><tt:RateControl><tt:FrameRateLimit>{frame_rates[encoder]}</tt:FrameRateLimit>"
        "<tt:EncodingInterval>1</tt:EncodingInterval><tt:BitrateLimit>2048</tt:BitrateLimit></tt:RateControl>"
        "<tt:Multicast><tt:Address><tt:Type>IPv4</tt:Type><tt:IPv4Address>0.0.0.0</tt:IPv4Address></tt:Address>"
        "<tt:Port>8600</tt:Port><tt:TTL>128</tt:TTL><tt:AutoStart>false</tt:AutoStart></tt:Multicast>"
        "<tt:SessionTimeout>PT5S</tt:SessionTimeout><tt:Extension><maker:SmartCodec>off</maker:SmartCodec></tt:Extension>"
    )


def flatten(element):
    """Every element under `element` as (namespace-qualified tag, text), in order."""
    return [[child.tag, (child.text or "").strip()] for child in element.iter()]


def answer(root):
    body = root.find(f"{{{SOAP}}}Body")
    call = body[0] if body is not None and len(body) else None
    if call is None:
        return 400, fault("ter:InvalidArgVal", "no call")
    if not authorised(root):
        return 400, fault("ter:NotAuthorized", "Sender not Authorized")
    name = call.tag.split("}")[1]
    base = f"http://127.0.0.1:{args.http_port}"
    if name == "GetCapabilities":
        return 200, envelope(
            "<tds:GetCapabilitiesResponse><tds:Capabilities>"
            f"<tt:Media><tt:XAddr>{base}/onvif/media_service</tt:XAddr></tt:Media>"
            "</tds:Capabilities></tds:GetCapabilitiesResponse>"
        )
    if name == "GetProfiles":
        profiles = "".join(
            f'<trt:Profiles token="{token}" fixed="true"><tt:Name>{label}</tt:Name>'
            f'<tt:VideoEncoderConfiguration token="{encoder}">{encoder_configuration(encoder)}</tt:VideoEncoderConfiguration>'
            "</trt:Profiles>"
            for (token, label, encoder, *_rest) in PROFILES
        )
        return 200, envelope(f"<trt:GetProfilesResponse>{profiles}</trt:GetProfilesResponse>")
    if name == "GetStreamUri":
        token = call.findtext(f"{{{MEDIA}}}ProfileToken")
        protocol = call.findtext(f"{{{MEDIA}}}StreamSetup/{{{TT}}}Transport/{{{TT}}}Protocol")
        path = next((p[7] for p in PROFILES if p[0] == token), None)
        if path is None or protocol != "RTSP":
            return 400, fault("ter:InvalidArgVal", "no such profile or transport")
        return 200, envelope(
            f"<trt:GetStreamUriResponse><trt:MediaUri><tt:Uri>rtsp://127.0.0.1:554{path}</tt:Uri>"
            "<tt:InvalidAfterConnect>false</tt:InvalidAfterConnect><tt:InvalidAfterReboot>false</tt:InvalidAfterReboot>"
            "<tt:Timeout>PT0S</tt:Timeout></trt:MediaUri></trt:GetStreamUriResponse>"
        )
    if name == "GetVideoEncoderConfiguration":
        encoder = call.findtext(f"{{{MEDIA}}}ConfigurationToken")
        if encoder not in frame_rates:
            return 400, fault("ter:NoConfig", "no such configuration")
        return 200, envelope(
            "<trt:GetVideoEncoderConfigurationResponse>"
            f'<trt:Configuration token="{encoder}">{encoder_configuration(encoder)}</trt:Configuration>'
            "</trt:GetVideoEncoderConfigurationResponse>"
        )
    if name == "SetVideoEncoderConfiguration":
        configuration = call.find(f"{{{MEDIA}}}Configuration")
        encoder = configuration.get("token") if configuration is not None else None
        if encoder not in frame_rates:
            return 400, fault("ter:NoConfig", "no such configuration")
        original = flatten(ET.fromstring(
            f'<trt:Configuration xmlns:trt="{MEDIA}" xmlns:tt="{TT}" xmlns:maker="urn:example:maker" '
            f'token="{encoder}">{encoder_configuration(encoder)}</trt:Configuration>'))
        record({
            "event": "set",
            "encoder": encoder,
            "sent": flatten(configuration),
            "original": original,
            "force_persistence": call.findtext(f"{{{MEDIA}}}ForcePersistence"),
        })
        if args.refuse_set:
            return 400, fault("ter:ConfigModify", "The configuration cannot be changed")
        frame_rates[encoder] = int(configuration.findtext(f"{{{TT}}}RateControl/{{{TT}}}FrameRateLimit"))
        return 200, envelope("<trt:SetVideoEncoderConfigurationResponse/>")
    return 400, fault("ter:ActionNotSupported", f"{name} is not supported")


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        try:
            root = ET.fromstring(self.rfile.read(length))
            status, text = answer(root)
        except ET.ParseError:
            status, text = 400, fault("ter:WellFormed", "not XML")
        data = text.encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/soap+xml; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *_):
        pass


def main():
    global args
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--interface", help="IPv4 address to join the discovery group on; none: no discovery")
    parser.add_argument("--user", default="admin")
    parser.add_argument("--password", required=True)
    parser.add_argument("--record", required=True)
    parser.add_argument("--hostile", action="store_true")
    parser.add_argument("--refuse-set", action="store_true")
    args = parser.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    args.http_port = server.server_address[1]
    if args.interface:
        threading.Thread(target=answer_probes, args=(serve_discovery(),), daemon=True).start()
    print(f"ready {args.http_port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
