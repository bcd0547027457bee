"""What AWX / Automation Controller does with this collection's credential types and job templates, for tests
that cannot reach a controller: validate a credential type as AWX does when it is saved, inject a credential
into a job's private data directory as AWX does when a job starts (CredentialType.inject_credential: a sandboxed
Jinja2 namespace of the inputs, each file template written to a 0600 file under env/ whose path is
`tower.filename.<name>`, then the env and extra_vars templates), and launch a job template: the answers AWX
accepts (survey variables only when variables are not asked on launch), and the extra variables it writes for the
job (the template's, survey answers over them marked !unsafe)."""

import glob
import os
import re
import stat
import tempfile

import yaml
from jinja2 import StrictUndefined
from jinja2.sandbox import ImmutableSandboxedEnvironment

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
AWX_DIR = os.path.join(ROOT, "extensions", "awx")
FIELD_TYPES = {"string", "boolean"}
# AWX refuses to inject these (ANSIBLE_* and awx.main.constants.ENV_BLOCKLIST).
ENV_BLOCKLIST = re.compile(r"^(ANSIBLE_.*|VIRTUAL_ENV|PATH|PYTHONPATH|JOB_ID|INVENTORY_ID|INVENTORY_SOURCE_ID|"
                           r"INVENTORY_UPDATE_ID|AD_HOC_COMMAND_ID|REST_API_URL|REST_API_TOKEN|MAX_EVENT_RES|"
                           r"CALLBACK_QUEUE|CALLBACK_CONNECTION|CACHE|JOB_CALLBACK_DEBUG|INVENTORY_HOSTVARS|AWX_HOST|"
                           r"PROJECT_REVISION|SUPERVISOR_CONFIG_PATH)$")


def load_credential_types():
    """{file stem: definition} of extensions/awx/credential_types/*.yml."""
    types = {}
    for path in sorted(glob.glob(os.path.join(AWX_DIR, "credential_types", "*.yml"))):
        with open(path) as f:
            types[os.path.splitext(os.path.basename(path))[0]] = yaml.safe_load(f)
    return types


def load_job_templates():
    with open(os.path.join(AWX_DIR, "job_templates.yml")) as f:
        return yaml.safe_load(f)


class _Namespace(object):
    pass


def _file_names(ctype):
    """file injector label -> how templates reference its path: `template` is tower.filename, `template.x` is
    tower.filename.x."""
    return [label.split(".", 1)[1] if "." in label else None for label in (ctype.get("injectors") or {}).get("file", {})]


def validate(ctype):
    """The errors AWX would report when saving this credential type, plus this collection's own rules (secret
    inputs marked secret). An empty list means valid."""
    errors = []
    if ctype.get("kind") not in ("cloud", "net"):
        errors.append("kind must be cloud or net for a custom credential type")
    fields = (ctype.get("inputs") or {}).get("fields") or []
    ids = [f.get("id") for f in fields]
    if len(set(ids)) != len(ids):
        errors.append("duplicate input ids")
    for field in fields:
        if not field.get("id") or not field.get("label"):
            errors.append("input without id or label: %r" % field)
        if field.get("type", "string") not in FIELD_TYPES:
            errors.append("%s: unknown type %s" % (field.get("id"), field.get("type")))
        looks_secret = re.search(r"key|token|password|secret|kubeconfig", field.get("id", ""))
        if looks_secret and field.get("secret") is not True:
            errors.append("%s holds a secret but is not marked secret: true" % field["id"])
    for req in (ctype.get("inputs") or {}).get("required") or []:
        if req not in ids:
            errors.append("required input %s is not defined" % req)
    injectors = ctype.get("injectors") or {}
    unknown = set(injectors) - {"file", "env", "extra_vars"}
    if unknown:
        errors.append("unknown injector kinds %s" % sorted(unknown))
    # AWX renders every template with every input set and undefined names as errors.
    env = ImmutableSandboxedEnvironment(undefined=StrictUndefined)
    tower = _Namespace()
    names = _file_names(ctype)
    if None in names and len(names) > 1:
        errors.append("must use multi-file syntax (template.<name>) when injecting multiple files")
    if None in names:
        tower.filename = "/runner/env/tmpfile"
    elif names:
        tower.filename = _Namespace()
        for name in names:
            setattr(tower.filename, name, "/runner/env/tmp" + name)
    namespace = dict((f["id"], False if f.get("type") == "boolean" else "EXAMPLE") for f in fields)
    namespace["tower"] = tower
    for kind in ("file", "env", "extra_vars"):
        for key, template in (injectors.get(kind) or {}).items():
            if kind == "env" and ENV_BLOCKLIST.match(key):
                errors.append("env %s may not be injected by AWX" % key)
            if kind == "file" and not re.match(r"^template(\.[a-zA-Z_]+[a-zA-Z0-9_]*)?$", key):
                errors.append("file injector %s must be `template` or `template.<name>`" % key)
            try:
                env.from_string(template).render(**namespace)
            except Exception as e:  # pylint: disable=broad-except
                errors.append("%s.%s: %s" % (kind, key, e))
    return errors


def inject(ctype, inputs, private_data_dir):
    """Inject one credential into a job's private data directory as AWX does; returns (env, extra_vars)."""
    env_dir = os.path.join(private_data_dir, "env")
    os.makedirs(env_dir, exist_ok=True)
    sandbox = ImmutableSandboxedEnvironment()
    namespace = {}
    for field in ctype["inputs"].get("fields", []):
        value = inputs.get(field["id"])
        if field.get("type") == "boolean":
            namespace[field["id"]] = bool(value)
        elif value:
            namespace[field["id"]] = value
    tower = _Namespace()
    namespace["tower"] = tower
    injectors = ctype.get("injectors") or {}
    for label, template in (injectors.get("file") or {}).items():
        data = sandbox.from_string(template).render(**namespace)
        fd, path = tempfile.mkstemp(dir=env_dir)
        with os.fdopen(fd, "w") as f:
            f.write(data)
        os.chmod(path, stat.S_IRUSR | stat.S_IWUSR)
        if "." not in label:
            tower.filename = path
        else:
            if not hasattr(tower, "filename"):
                tower.filename = _Namespace()
            setattr(tower.filename, label.split(".", 1)[1], path)
    env = dict((k, sandbox.from_string(t).render(**namespace)) for k, t in (injectors.get("env") or {}).items())
    extra_vars = dict((k, sandbox.from_string(t).render(**namespace))
                      for k, t in (injectors.get("extra_vars") or {}).items())
    return env, extra_vars


# ---------------------------------------------------------------------------------------------------------------------
# Job templates and launches


class LaunchRefused(Exception):
    """What AWX answers a launch it refuses (HTTP 400), with its reason."""


def job_template(jobs, playbook):
    return next(jt for jt in jobs["job_templates"] if jt["playbook"] == playbook)


def combine(base, override):
    """Ansible's combine(recursive=true): mappings merge key by key, anything else is replaced."""
    out = dict(base)
    for key, value in override.items():
        out[key] = combine(out[key], value) if isinstance(out.get(key), dict) and isinstance(value, dict) else value
    return out


def template_extra_vars(jobs, template_vars=None):
    """The extra variables playbooks/awx_setup.yml gives every job template: job_templates.yml's `extra_vars` with
    the administrator's nimguard_awx_template_vars merged over them."""
    return combine(jobs["extra_vars"], template_vars or {})


def launch(jobs, template, answers):
    """The survey answers AWX takes for a launch of `template`, defaults filled in; raises LaunchRefused for what
    AWX refuses: a variable that is no survey question's when variables are not asked on launch, a required question
    left empty, an answer longer or shorter than the question allows."""
    questions = [jobs["questions"][q] for q in template["questions"]]
    variables = set(q["variable"] for q in questions)
    extra = sorted(set(answers) - variables)
    if extra and not jobs["launch"]["ask_variables_on_launch"]:
        raise LaunchRefused("Variables %s provided, but not allowed on launch" % ", ".join(extra))
    out = {}
    for q in questions:
        value = answers.get(q["variable"], q.get("default", ""))
        if q["required"] and value in ("", None):
            raise LaunchRefused("'%s' value missing" % q["variable"])
        if q["type"] in ("text", "textarea", "password") and not q.get("min", 0) <= len(value) <= q.get("max", 1024):
            raise LaunchRefused("'%s' value %d characters, outside %s to %s"
                                % (q["variable"], len(value), q["min"], q["max"]))
        out[q["variable"]] = value
    return out


class Unsafe(str):
    """A value AWX writes with Ansible's !unsafe tag: never templated in the job."""


class _ExtraVarsDumper(yaml.SafeDumper):
    pass


_ExtraVarsDumper.add_representer(Unsafe, lambda dumper, value: dumper.represent_scalar("!unsafe", str(value)))


def write_extravars(private_data_dir, template_vars, answers):
    """env/extravars as AWX writes it for a launch: the template's extra variables (Jinja allowed: AWX's default
    ALLOW_JINJA_IN_EXTRA_VARS=template), the survey answers over them, each answer marked !unsafe. ansible-runner
    passes the file to ansible-playbook as `-e @env/extravars`."""
    data = dict(template_vars)
    data.update((k, Unsafe(v)) for k, v in answers.items())
    os.makedirs(os.path.join(private_data_dir, "env"), exist_ok=True)
    with open(os.path.join(private_data_dir, "env", "extravars"), "w") as f:
        yaml.dump(data, f, Dumper=_ExtraVarsDumper, default_flow_style=False)
