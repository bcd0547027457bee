import base64
import json
import tomllib

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.nimguard.k8s.plugins.filter.containerd import (FilterModule, containerd_config_info,
                                                                        containerd_main_config, containerd_nvidia_dropin,
                                                                        containerd_runtime_check, crio_nvidia_dropin)

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
    assert "replaces a plugin's whole section" in out


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
    # No runtime to copy: the entry nvidia-ctk writes then (runtime_root and runtime_engine empty).
    assert containerd == {"default_runtime_name": "nvidia", "runtimes": {"nvidia": {
        "runtime_type": "io.containerd.runc.v2", "runtime_root": "", "runtime_engine": "",
        "privileged_without_host_devices": False, "options": {"BinaryName": BIN}}}}


def test_an_nvidia_default_is_not_copied_and_unset_when_not_wanted():
    text = ('version = 2\n[plugins."io.containerd.grpc.v1.cri".containerd]\ndefault_runtime_name = "nvidia"\n'
            '[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.nvidia.options]\nBinaryName = "/old"\n'
            '[plugins."io.containerd.grpc.v1.cri".containerd.runtimes.crun.options]\nSystemdCgroup = true\n')
    containerd = cri(containerd_nvidia_dropin(text, 2, "nvidia", BIN))["containerd"]
    assert "default_runtime_name" not in containerd
    assert containerd["runtimes"]["nvidia"]["options"] == {"SystemdCgroup": True, "BinaryName": BIN}


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


def slurped(path, text):
    return {"source": path, "content": base64.b64encode(text.encode()).decode()}


def test_imports_are_read_as_containerd_merges_them():
    main = 'imports = ["/etc/containerd/conf.d/*.toml"]\n' + V2
    first = ('version = 2\n[plugins."io.containerd.grpc.v1.cri"]\nsandbox_image = "local/pause:1"\n'
             '[plugins."io.containerd.grpc.v1.cri".cni]\nconf_dir = "/etc/cni/other"\n')
    later = 'version = 2\n[plugins."io.containerd.gc.v1.scheduler"]\npause_threshold = 0.5\n'
    section = cri(containerd_nvidia_dropin(main, 2, "nvidia", BIN, imports=[
        slurped("/etc/containerd/conf.d/10-cri.toml", first), {"path": "/etc/containerd/conf.d/20-gc.toml",
                                                               "text": later}]))
    # containerd 1.x: an imported CRI section replaces the main config's whole section.
    assert section["sandbox_image"] == "local/pause:1" and section["cni"] == {"conf_dir": "/etc/cni/other"}
    assert "restrict_oom_score_adj" not in section and "registry" not in section
    assert set(section["containerd"]["runtimes"]) == {"nvidia"}
    # containerd 2.x merges them key by key.
    v3 = ("version = 3\n[plugins.'io.containerd.cri.v1.runtime']\nenable_cdi = true\n"
          "[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]\nSystemdCgroup = true\n")
    drop = ("version = 3\n[plugins.'io.containerd.cri.v1.runtime']\ncdi_spec_dirs = ['/etc/cdi']\n"
            "[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]\nruntime_type = 'io.containerd.runc.v2'\n")
    section = cri(containerd_nvidia_dropin(v3, 3, "nvidia", BIN, imports=[slurped("/x/10.toml", drop)]),
                  "io.containerd.cri.v1.runtime")
    assert section["enable_cdi"] is True and section["cdi_spec_dirs"] == ["/etc/cdi"]
    assert section["containerd"]["runtimes"]["nvidia"] == {"runtime_type": "io.containerd.runc.v2", "options": {
        "SystemdCgroup": True, "BinaryName": BIN}}


def test_imported_files_that_import_or_differ_in_version_are_refused():
    with pytest.raises(AnsibleFilterError, match=r"/x/10.toml imports other files"):
        containerd_nvidia_dropin(V2, 2, "nvidia", BIN, imports=[slurped("/x/10.toml", 'version = 2\nimports = ["/y"]\n')])
    with pytest.raises(AnsibleFilterError, match=r"/x/10.toml has config version 3, the main config 2"):
        containerd_nvidia_dropin(V2, 2, "nvidia", BIN, imports=[slurped("/x/10.toml", "version = 3\n")])


CANARY = "canary-" + "Zq8rT2mN5vB7"


@pytest.mark.parametrize("registry, found", [
    ('[plugins."io.containerd.grpc.v1.cri".registry.configs."reg.example:5000".auth]\nusername = "u"\n'
     'password = "%s"\n' % CANARY, 'registry.configs."reg.example:5000".auth'),
    ('[plugins."io.containerd.grpc.v1.cri".registry.auths."https://reg.example"]\nauth = "%s"\n' % CANARY,
     "registry.auths"),
    ('[plugins."io.containerd.grpc.v1.cri".registry.headers]\nAuthorization = ["Basic %s"]\n' % CANARY,
     "registry.headers"),
])
def test_registry_credentials_are_never_copied_without_consent(registry, found):
    text = V2 + registry
    with pytest.raises(AnsibleFilterError) as err:
        containerd_nvidia_dropin(text, 2, "nvidia", BIN, config_path="/etc/containerd/config.toml")
    assert found in str(err.value) and CANARY not in str(err.value)
    assert "gpu_runtime_containerd_allow_registry_auth" in str(err.value)
    # With consent they are carried (the role then writes the drop-in 0600); mirrors are carried either way.
    section = cri(containerd_nvidia_dropin(text, 2, "nvidia", BIN, allow_registry_auth=True))
    assert CANARY in json.dumps(section["registry"]) and section["registry"]["mirrors"]


def test_version_3_never_carries_the_images_plugin():
    text = ("version = 3\n[plugins.'io.containerd.cri.v1.images'.registry.configs.'r.example'.auth]\n"
            "password = '%s'\n[plugins.'io.containerd.cri.v1.runtime']\nenable_cdi = true\n" % CANARY)
    out = containerd_nvidia_dropin(text, 3, "nvidia", BIN)
    assert CANARY not in out and cri(out, "io.containerd.cri.v1.runtime")["enable_cdi"] is True


@pytest.mark.parametrize("handler", ["Nvidia", "nvidia]\n[evil", "a" * 64, "", "-x", "nv_idia", None])
def test_handler_must_be_a_dns_label(handler):
    with pytest.raises(AnsibleFilterError, match="gpu_runtime_handler .* lowercase DNS label"):
        containerd_nvidia_dropin(V2, 2, handler, BIN)
    with pytest.raises(AnsibleFilterError, match="gpu_runtime_handler .* lowercase DNS label"):
        crio_nvidia_dropin(handler, BIN)


@pytest.mark.parametrize("binary", ["nvidia-container-runtime", "/usr/bin/x\"\n[evil]", "/usr/../bin/x", "", None])
def test_binary_must_be_an_absolute_path(binary):
    with pytest.raises(AnsibleFilterError, match="gpu_runtime_runtime_binary .* absolute path"):
        containerd_nvidia_dropin(V2, 2, "nvidia", binary)
    with pytest.raises(AnsibleFilterError, match="gpu_runtime_runtime_binary .* absolute path"):
        crio_nvidia_dropin("nvidia", binary)


def test_crio_dropin_quotes_and_reads_back():
    odd = '/opt/nvidia "toolkit"/bin/nvidia-container-runtime'
    conf = tomllib.loads(crio_nvidia_dropin("gpu-1", odd, default_runtime=True))
    assert conf == {"crio": {"runtime": {"default_runtime": "gpu-1", "runtimes": {"gpu-1": {
        "runtime_path": odd, "runtime_type": "oci", "monitor_path": "/usr/libexec/crio/conmon"}}}}}


MAIN_NO_VERSION = ('root = "/var/lib/containerd"\n[grpc]\n  address = "/run/containerd/containerd.sock"\n'
                   '[plugins."io.containerd.grpc.v1.cri"]\n  sandbox_image = "registry.k8s.io/pause:3.9"\n')
GLOB = "/etc/containerd/conf.d/*.toml"


def test_main_config_without_version_gets_both_lines_at_the_top():
    out = containerd_main_config(MAIN_NO_VERSION, GLOB, 2)
    assert out == 'version = 2\nimports = ["%s"]\n' % GLOB + MAIN_NO_VERSION
    doc = tomllib.loads(out)  # top-level keys, not inside [plugins...]: containerd reads them
    assert doc["imports"] == [GLOB] and doc["version"] == 2
    assert containerd_main_config(out, GLOB, 2) == out


def test_main_config_keeps_everything_else_byte_for_byte():
    text = ('# node config\nversion = 2\nimports = [\n  "/etc/containerd/other/*.toml", # theirs\n]\n'
            'root = """\n[not a table]\n"""\n\n[grpc]\n  address = "x"  # [comment]\n')
    out = containerd_main_config(text, GLOB, 2, "/etc/containerd/config.toml")
    assert out == ('# node config\nversion = 2\nimports = ["/etc/containerd/other/*.toml", "%s"]\n'
                   'root = """\n[not a table]\n"""\n\n[grpc]\n  address = "x"  # [comment]\n' % GLOB)
    assert containerd_main_config("", GLOB, 3) == 'version = 3\nimports = ["%s"]\n' % GLOB


def test_main_config_refusals():
    with pytest.raises(AnsibleFilterError, match="no version line and uses version 1 plugin names"):
        containerd_main_config('[plugins.cri]\nsandbox_image = "x"\n', GLOB, 2)
    with pytest.raises(AnsibleFilterError, match="imports in /c.toml is not a list"):
        containerd_main_config('version = 2\nimports = "/x"\n', GLOB, 2, "/c.toml")
    with pytest.raises(AnsibleFilterError, match="/c.toml is not valid TOML"):
        containerd_main_config('version = 2\n[a\n', GLOB, 2, "/c.toml")


def test_config_info_version_and_import_patterns():
    main = 'version = 2\nimports = ["/etc/containerd/conf.d/*.toml", "extra/[1].toml", "/abs/file.toml"]\n'
    assert containerd_config_info(main, "/etc/containerd/config.toml") == {"version": 2, "imports": [
        {"paths": "/etc/containerd/conf.d", "patterns": "*.toml"},
        {"paths": "/etc/containerd/extra", "patterns": "[[]1].toml"},
        {"paths": "/abs", "patterns": "file.toml"}]}
    # A new main config: the version containerd itself uses.
    assert containerd_config_info("", "/c", "auto", "containerd github.com/containerd/containerd v2.1.4 abc")["version"] == 3
    assert containerd_config_info("", "/c", "auto", "containerd containerd.io 1.6.20~ds1 1.6.20~ds1-1")["version"] == 2
    assert containerd_config_info("", "/c", "auto", "")["version"] == 2
    assert containerd_config_info("", "/c", "3")["version"] == 3
    with pytest.raises(AnsibleFilterError, match="/c has config version 2, not 3"):
        containerd_config_info("version = 2\n", "/c", 3)
    with pytest.raises(AnsibleFilterError, match="only containerd 2.x reads, and this node runs containerd 1.x"):
        containerd_config_info("version = 3\n", "/c", "auto", "containerd containerd.io 1.7.24 e0d5b")
    with pytest.raises(AnsibleFilterError, match="relative pattern"):
        containerd_config_info('version = 2\nimports = ["conf.d/*.toml"]\n', "/c")
    with pytest.raises(AnsibleFilterError, match="a pattern in a folder name"):
        containerd_config_info('version = 2\nimports = ["/etc/*/x.toml"]\n', "/c")


def test_runtime_check_reads_the_dump():
    dump = containerd_nvidia_dropin(V2, 2, "nvidia", BIN)
    assert containerd_runtime_check(dump, 2, "nvidia", BIN) == {
        "runtimes": ["nvidia", "runc"], "default_runtime": "runc", "nvidia": {"BinaryName": BIN}}
    with pytest.raises(AnsibleFilterError, match="would run without the nvidia runtime .*no such runtime"):
        containerd_runtime_check(V2, 2, "nvidia", BIN)
    with pytest.raises(AnsibleFilterError, match='BinaryName "/usr/sbin/runc"'):
        containerd_runtime_check(V2, 2, "runc", BIN)


def test_registered_as_filters():
    filters = FilterModule().filters()
    assert filters["containerd_nvidia_dropin"] is containerd_nvidia_dropin
    assert set(filters) == {"containerd_nvidia_dropin", "containerd_main_config", "containerd_config_info",
                            "containerd_runtime_check", "crio_nvidia_dropin"}
