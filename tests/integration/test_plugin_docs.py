"""The YAML examples of docs/plugins/*.md: every block that is a whole configuration loads with
`turnpike -t` (host names of the examples point at 127.0.0.1, {env: NAME} secrets are set,
{file: PATH} secrets are written to a temporary directory), and the resource-acl and acl
examples behave as their documents say when they serve requests."""

import glob
import os
import re

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from conftest import check_alive, check_config
from rawhttp import request

DOCS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "docs", "plugins")


def yaml_blocks():
    """(name, text) of every ```yaml block of docs/plugins/*.md that is a whole configuration
    (not a fragment that starts with a list item)."""
    out = []
    for path in sorted(glob.glob(os.path.join(DOCS, "*.md"))):
        with open(path) as f:
            blocks = re.findall(r"^```yaml\n(.*?)^```", f.read(), re.M | re.S)
        for i, text in enumerate(blocks):
            first = next(l for l in text.splitlines() if l.strip() and not l.startswith("#"))
            if not first.startswith("-"):
                out.append(("%s#%d" % (os.path.basename(path)[:-3], i), text))
    return out


BLOCKS = yaml_blocks()


def test_docs_have_examples():
    names = {n.split("#")[0] for n, _ in BLOCKS}
    # every plugin document has at least one whole example
    assert names == {os.path.basename(p)[:-3] for p in glob.glob(os.path.join(DOCS, "*.md"))}


def ec_public_pem():
    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    return key.public_bytes(serialization.Encoding.PEM,
                            serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def localize(text, tmp_path, upstream="http://127.0.0.1:9"):
    """The example with its services sent to `upstream`, its {file: PATH} secrets written under
    tmp_path; returns (text, env) with every {env: NAME} set."""
    text = re.sub(r"http://[a-z0-9.-]+\.internal(:[0-9]+)?", upstream, text)

    def put_file(m):
        path = m.group(1)
        local = tmp_path / ("secret-%d-%s" % (len(os.listdir(tmp_path)), os.path.basename(path)))
        local.write_text(ec_public_pem() if path.endswith(".pem") else "plain-text-secret\n")
        return "{file: %s}" % local
    text = re.sub(r"\{file: ([^}]+)\}", put_file, text)
    env = {name: "doc-%s-value" % name.lower() for name in re.findall(r"\{env: (\w+)\}", text)}
    return text, env


@pytest.mark.parametrize("name,text", BLOCKS, ids=[n for n, _ in BLOCKS])
def test_doc_example_loads(tmp_path, name, text):
    text, env = localize(text, tmp_path)
    rc, err = check_config(tmp_path, text, env=env)
    assert rc == 0, "%s:\n%s\n%s" % (name, text, err)


def block(doc):
    return next(t for n, t in BLOCKS if n.startswith(doc + "#"))


def start(stack, doc):
    """A gateway serving the example of docs/plugins/<doc>.md towards an echo backend."""
    be = stack.backend("echo")
    gw = stack.gateway([], start=False)
    text, env = localize(block(doc), gw.dir, be.url)
    head = ('listen: ["127.0.0.1:%d"]\nworkers: 1\naccess_log: %s\nerror_log: %s\n'
            'security_log: %s\n' % (gw.port, gw.access_log, gw.error_log, gw.security_log))
    gw.write_text(head + text)
    gw.env = env
    gw.start()
    return gw, env


def test_resource_acl_example_behaves_as_documented(stack):
    gw, env = start(stack, "resource-acl")
    keys = {"alice": env["ALICE_KEY"], "bob": env["BOB_KEY"], "root": env["ROOT_KEY"],
            "bot": env["BOT_KEY"], None: None}

    def st(who, target, method="GET"):
        headers = [("apikey", keys[who])] if who else []
        return request(gw.port, method, target, headers=headers).status

    assert st("alice", "/users/alice") == 200
    assert st("alice", "/users/alice/orders", "PUT") == 200
    assert st("bob", "/users/alice") == 403
    assert st("root", "/users/alice", "DELETE") == 200
    assert st("bot", "/users/alice/x") == 200
    assert st("root", "/users") == 200
    assert st("alice", "/users") == 403
    # the invoices rule applies: the template route wins over the "/" prefix route
    assert st("alice", "/invoices/42") == 200
    assert st("alice", "/invoices/43") == 403
    assert st("bob", "/invoices/42") == 403
    assert st("root", "/invoices/43") == 403
    assert st("bob", "/docs/a/b") == 200 and st("bob", "/health") == 200
    assert st(None, "/health") == 401                  # key-auth still wants a key
    assert st("root", "/internal/x") == 403
    assert st("root", "/elsewhere") == 403              # default: deny
    check_alive(gw)


def test_acl_example_behaves_as_documented(stack):
    gw, env = start(stack, "acl")
    ann = [("apikey", env["ANN_KEY"])]

    def st(method, target):
        return request(gw.port, method, target, headers=ann).status

    # "ann may read orders and reports and create or change orders, but not delete them"
    assert st("GET", "/orders") == 200 and st("HEAD", "/orders") == 200
    assert st("GET", "/reports") == 200
    assert st("POST", "/orders") == 200 and st("PUT", "/orders") == 200
    assert st("DELETE", "/orders") == 403
    assert st("POST", "/reports") == 403
    check_alive(gw)
