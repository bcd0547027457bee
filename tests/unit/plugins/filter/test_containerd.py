import tomllib

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.nimguard.k8s.plugins.filter.containerd import FilterModule, containerd_nvidia_dropin

BIN = "/usr/bin/nvidia-container-runtime"
V2 = 'version = 2\nroot = "/var/lib/containerd"\n[grpc]\n  address = "/run/containerd/containerd.sock"\n' \
     '[plugins."io.containerd.grpc.v1.cri"]\n  sandbox_image = "registry.k8s.io/pause:3.9"\n' \
     '  restrict_oom_score_adj = true\n  stream_idle_timeout = "4h0m0s"\n' \
     '  [plugins."io.containerd.grpc.v1.cri".cni]\n    conf_dir = "/etc/cni/net.d"\n' \
     '  [plugins."io.containerd.grpc.v1.cri".containerd]\n    default_runtime_name = "runc"\n' \
     '    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]\n' \
     '      runtime_type = "io.containerd.runc.v2"\n      pod_annotations = ["a.b/*"]\n' \
     '      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]\n' \
     '        SystemdCgroup = true\n        BinaryName = "/usr/sbin/runc"\n' \
     '[plugins."io.containerd.grpc.v1.cri".registry.mirrors."docker.io"]\n  endpoint = ["https://m.example"]\n' \
     '[plugins."io.containerd.gc.v1.scheduler"]\n  pause_threshold = 0.02\n'


def cri(text, name="io.containerd.grpc.v1.cri"):
    doc = tomllib.loads(text)
    assert set(doc) == {"version", "plugins"} and set(doc["plugins"]) == {name}, doc
    return doc["plugins"][name]


def test_carries_the_cri_section_and_copies_the_default_runtime():
    out = containerd_nvidia_dropin(V2, "2", "nvidia", BIN)
    assert tomllib.loads(out)["version"] == 2
    section = cri(out)
    main = tomllib.loads(V2)["plugins"]["io.containerd.grpc.v1.cri"]
    assert section["sandbox_image"] == "registry.k8s.io/pause:3.9" and section["restrict_oom_score_adj"] is True
    assert section["cni"] == main["cni"] and section["registry"] == main["registry"]
    runtimes = section["containerd"]["runtimes"]
    assert runtimes["runc"] == main["containerd"]["runtimes"]["runc"]  # untouched
    assert runtimes["nvidia"] == {"runtime_type": "io.containerd.runc.v2", "pod_annotations": ["a.b/*"],
                                  "options": {"SystemdCgroup": True, "BinaryName": BIN}}
    assert section["containerd"]["default_runtime_name"] == "runc"
    assert "containerd replaces a plugin's whole section" in out


def test_deterministic_and_stable():
    out = containerd_nvidia_dropin(V2, 2, "nvidia", BIN)
    assert containerd_nvidia_dropin(V2, 2, "nvidia", BIN) == out
    # Keys are sorted: the same settings in another order give the same bytes.
    reordered = V2.replace('  sandbox_image = "registry.k8s.io/pause:3.9"\n', "").replace(
        "  stream_idle_timeout", '  sandbox_image = "registry.k8s.io/pause:3.9"\n  stream_idle_timeout')
    assert reordered != V2 and containerd_nvidia_dropin(reordered, 2, "nvidia", BIN) == out
    # The drop-in read back as a main config (nvidia-ctk's case) gives the same drop-in.
    assert containerd_nvidia_dropin(out, 2, "nvidia", BIN) == out


def test_default_runtime_and_no_main_config():
    out = containerd_nvidia_dropin("", 2, "nvidia", BIN, default_runtime=True)
    containerd = cri(out)["containerd"]
    assert containerd == {"default_runtime_name": "nvidia", "runtimes": {"nvidia": {
        "runtime_type": "io.containerd.runc.v2", "options": {"BinaryName": BIN}}}}


def test_copies_the_named_default_runtime():
    text = ('version = 2\n[plugins."io.containerd.grpc.v1.cri".containerd]\ndefault_runtime_name = "crun"\n'
            '[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.crun.options]\nSystemdCgroup = true\n'
            '[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]\nSystemdCgroup = false\n')
    nvidia = cri(containerd_nvidia_dropin(text, 2, "nvidia", BIN))["containerd"]["runtimes"]["nvidia"]
    assert nvidia["options"] == {"SystemdCgroup": True, "BinaryName": BIN}


def test_version_3_uses_the_cri_runtime_plugin():
    text = ('version = 3\n[plugins."io.containerd.cri.v1.images".pinned_images]\nsandbox = "registry.k8s.io/pause:3.10"\n'
            "[plugins.'io.containerd.cri.v1.runtime']\nenable_cdi = true\n"
            "[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]\nruntime_type = 'io.containerd.runc.v2'\n"
            "[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]\nSystemdCgroup = true\n")
    out = containerd_nvidia_dropin(text, "3", "gpu", BIN, True)
    assert tomllib.loads(out)["version"] == 3
    section = cri(out, "io.containerd.cri.v1.runtime")  # the images plugin is not carried: the main config keeps it
    assert section["enable_cdi"] is True and section["containerd"]["default_runtime_name"] == "gpu"
    assert section["containerd"]["runtimes"]["gpu"]["options"] == {"SystemdCgroup": True, "BinaryName": BIN}


def test_invalid_toml_names_the_config():
    with pytest.raises(AnsibleFilterError, match=r"/etc/containerd/config.toml is not valid TOML"):
        containerd_nvidia_dropin("version = 2\n[plugins\n", 2, "nvidia", BIN, config_path="/etc/containerd/config.toml")
    with pytest.raises(AnsibleFilterError, match=r"not valid TOML"):
        containerd_nvidia_dropin("a = 1\na = 2\n", 2, "nvidia", BIN)


def test_unsupported_version():
    with pytest.raises(AnsibleFilterError, match="version must be 2 or 3"):
        containerd_nvidia_dropin("", "1", "nvidia", BIN)


def test_writer_quotes_and_types():
    text = ('version = 2\n[plugins."io.containerd.grpc.v1.cri"]\n"odd key" = "tab\\there \\"q\\" \\u00e9 \\u007f"\n'
            'n = -3\nf = 1.5e+20\ninf = inf\nempty = {}\nlist = [1, "two", [3.0], {x = true}]\n'
            'when = 1979-05-27T07:32:00Z\n[[plugins."io.containerd.grpc.v1.cri".tables]]\nname = "a"\n'
            '[plugins."io.containerd.grpc.v1.cri".sub.table]\n')
    out = containerd_nvidia_dropin(text, 2, "nvidia", BIN)
    section = cri(out)
    main = tomllib.loads(text)["plugins"]["io.containerd.grpc.v1.cri"]
    for key in main:
        assert section[key] == main[key], key
    assert containerd_nvidia_dropin(out, 2, "nvidia", BIN) == out


def test_registered_as_filter():
    assert FilterModule().filters()["containerd_nvidia_dropin"] is containerd_nvidia_dropin
