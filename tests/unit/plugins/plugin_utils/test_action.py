"""The action plugin reports argument problems as AnsibleModule does on the module path (the integration test
tests/integration/test_paths_parity.py compares both paths for real); here, the deprecation that no option of the
collection has yet."""

from ansible.module_utils.common.arg_spec import ArgumentSpecValidator

from ansible_collections.nimguard.k8s.plugins.plugin_utils.action import NimAction


def test_alias_warning_and_deprecation_as_on_the_module_path():
    spec = {"api_proxy": {"type": "str", "aliases": ["proxy"],
                          "deprecated_aliases": [{"name": "proxy", "version": "2.0.0",
                                                  "collection_name": "nimguard.k8s"}]},
            "ca_cert": {"type": "str", "aliases": ["ssl_ca_cert"]}}
    validated = ArgumentSpecValidator(spec).validate({"proxy": "http://p", "ca_cert": "a", "ssl_ca_cert": "a"})
    out = NimAction._argument_notes(validated, {"warnings": ["from the module"]})
    assert out["warnings"] == ["Both option ca_cert and its alias ssl_ca_cert are set.", "from the module"]
    assert out["deprecations"] == [{"msg": "Alias 'proxy' is deprecated. See the module docs for more information",
                                    "version": "2.0.0", "date": None, "collection_name": "nimguard.k8s"}]
    assert NimAction._argument_notes(ArgumentSpecValidator(spec).validate({}), {"changed": False}) == {
        "changed": False}
