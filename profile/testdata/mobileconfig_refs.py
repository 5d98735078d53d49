"""Reads a .mobileconfig with Python's plistlib (an independent plist parser) and
prints, as JSON, each payload's type, identifier and UUID, the certificate bytes of the
certificate payloads, and every cross-reference resolved to the type of the payload it
names. Exits non-zero when a UUID or identifier repeats or a reference names nothing.

Usage: python3 mobileconfig_refs.py FILE
"""

import base64
import json
import plistlib
import sys


def fail(msg):
    print(msg, file=sys.stderr)
    sys.exit(1)


with open(sys.argv[1], "rb") as f:
    top = plistlib.load(f)

if top.get("PayloadType") != "Configuration" or not isinstance(top.get("PayloadVersion"), int):
    fail("not a configuration profile")
payloads = top["PayloadContent"]
if not isinstance(payloads, list):
    fail("PayloadContent is not an array")

by_uuid = {}
idents = set()
for p in payloads:
    for k in ("PayloadType", "PayloadIdentifier", "PayloadUUID"):
        if not isinstance(p.get(k), str):
            fail("payload without a string %s" % k)
    if p.get("PayloadVersion") != 1 or isinstance(p.get("PayloadVersion"), bool):
        fail("PayloadVersion is not the integer 1")
    if p["PayloadUUID"] in by_uuid or p["PayloadUUID"] == top["PayloadUUID"]:
        fail("repeated UUID " + p["PayloadUUID"])
    if p["PayloadIdentifier"] in idents:
        fail("repeated identifier " + p["PayloadIdentifier"])
    by_uuid[p["PayloadUUID"]] = p
    idents.add(p["PayloadIdentifier"])


def resolve(uuid):
    if uuid not in by_uuid:
        fail("reference to a missing payload " + uuid)
    return by_uuid[uuid]["PayloadType"]


def kind(v):
    for t, name in ((bool, "boolean"), (int, "integer"), (float, "real"), (str, "string"),
                    (bytes, "data"), (dict, "dictionary"), (list, "array")):
        if isinstance(v, t):
            return name
    return type(v).__name__


def key_types(d, prefix, acc):
    """Every key path of d with its plist type; array elements as PATH[]."""
    for k, v in d.items():
        path = prefix + k
        acc[path] = kind(v)
        if isinstance(v, dict):
            key_types(v, path + ".", acc)
        elif isinstance(v, list):
            for x in v:
                acc[path + "[]"] = kind(x)
                if isinstance(x, dict):
                    key_types(x, path + "[].", acc)
    return acc


out = {"uuid": top["PayloadUUID"], "identifier": top["PayloadIdentifier"], "payloads": [],
       "topKeys": key_types({k: v for k, v in top.items() if k != "PayloadContent"}, "", {})}
for p in payloads:
    e = {"type": p["PayloadType"], "identifier": p["PayloadIdentifier"], "uuid": p["PayloadUUID"],
         "keys": key_types(p, "", {})}
    t = p["PayloadType"]
    if t in ("com.apple.security.root", "com.apple.security.pkcs1"):
        if not isinstance(p["PayloadContent"], bytes):
            fail("certificate payload content is not data")
        e["certificate"] = base64.b64encode(p["PayloadContent"]).decode()
    elif t == "com.apple.security.scep":
        c = p["PayloadContent"]
        if not isinstance(c, dict) or not isinstance(c.get("Keysize"), int) or not isinstance(c.get("CAFingerprint"), bytes):
            fail("SCEP payload types")
        e["url"] = c["URL"]
        e["challenge"] = c.get("Challenge", "")
        e["subject"] = c.get("Subject", [])
        e["caFingerprint"] = c["CAFingerprint"].hex()
    elif t == "com.apple.wifi.managed":
        eap = p["EAPClientConfiguration"]
        if not all(isinstance(x, int) and not isinstance(x, bool) for x in eap["AcceptEAPTypes"]):
            fail("AcceptEAPTypes holds a non-integer")
        if not isinstance(p["HIDDEN_NETWORK"], bool) or not isinstance(p["AutoJoin"], bool):
            fail("Wi-Fi booleans")
        e["ssid"] = p["SSID_STR"]
        e["hidden"] = p["HIDDEN_NETWORK"]
        e["encryption"] = p["EncryptionType"]
        e["eapTypes"] = eap["AcceptEAPTypes"]
        e["trustedServerNames"] = eap["TLSTrustedServerNames"]
        e["certificate"] = resolve(p["PayloadCertificateUUID"])
        e["certificateUuid"] = p["PayloadCertificateUUID"]
        e["anchors"] = [resolve(u) for u in eap["PayloadCertificateAnchorUUID"]]
        e["anchorUuids"] = eap["PayloadCertificateAnchorUUID"]
    elif t == "com.apple.vpn.managed":
        ike = p["IKEv2"]
        if not isinstance(ike.get("ExtendedAuthEnabled"), int):
            fail("ExtendedAuthEnabled is not an integer")
        e["vpnType"] = p["VPNType"]
        e["name"] = p["UserDefinedName"]
        e["authenticationMethod"] = ike["AuthenticationMethod"]
        e["remoteAddress"] = ike["RemoteAddress"]
        e["remoteIdentifier"] = ike["RemoteIdentifier"]
        e["localIdentifier"] = ike["LocalIdentifier"]
        e["certificate"] = resolve(ike["PayloadCertificateUUID"])
        e["certificateUuid"] = ike["PayloadCertificateUUID"]
    out["payloads"].append(e)
json.dump(out, sys.stdout)
