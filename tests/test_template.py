"""The shipped CloudFormation template: cfn-lint, least-privilege IAM, and the wiring.

The IAM check reads the policies themselves: every statement of every function's role must use
actions from that function's allow-list, each on the resources the list names for it (this
stack's queue, stream, table, log group... as Ref/GetAtt/Sub), and ``Resource: "*"`` only for
the actions AWS gives no resource-level permissions (X-Ray). Broadened copies of the template
must fail the same check, so the check can fail.
"""

from __future__ import annotations

import ast
import copy
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped]

import asyncloop
from asyncloop._deploy.spec import template_body, template_parameters

TEMPLATE_PATH = Path(asyncloop.__file__).parent / "_deploy" / "templates" / "asyncloop.yaml"
PACKAGE_DIR = Path(asyncloop.__file__).parent

# --------------------------------------------------------------------------- YAML with CFN tags


class CfnLoader(yaml.SafeLoader):  # type: ignore[misc]
    """SafeLoader that reads CloudFormation's short-form intrinsics (``!Ref``, ``!GetAtt``...)
    as their long forms (``{"Ref": ...}``, ``{"Fn::GetAtt": [...]}``)."""


def _construct(tag: str) -> Callable[[yaml.SafeLoader, yaml.Node], Any]:
    key = "Ref" if tag == "Ref" else "Condition" if tag == "Condition" else f"Fn::{tag}"

    def construct(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
        if isinstance(node, yaml.ScalarNode):
            value: Any = loader.construct_scalar(node)
            if tag == "GetAtt":
                value = value.split(".", 1)
        elif isinstance(node, yaml.SequenceNode):
            value = loader.construct_sequence(node, deep=True)
        else:
            value = loader.construct_mapping(node, deep=True)
        return {key: value}

    return construct


for _tag in (
    "Ref", "Condition", "GetAtt", "Sub", "If", "Equals", "Not", "And", "Or", "Join",
    "Select", "Split", "FindInMap", "GetAZs", "ImportValue", "Base64", "Cidr", "Length",
    "ToJsonString",
):  # fmt: skip
    CfnLoader.add_constructor(f"!{_tag}", _construct(_tag))


def load_template(text: str | None = None) -> dict[str, Any]:
    data = yaml.load(text if text is not None else template_body(), Loader=CfnLoader)
    assert isinstance(data, dict)
    return data


@pytest.fixture
def template() -> dict[str, Any]:
    return load_template()


# --------------------------------------------------------------------------- least privilege

_LOG_GROUP = re.compile(
    r"^arn:\$\{AWS::Partition\}:logs:\$\{AWS::Region\}:\$\{AWS::AccountId\}:"
    r"log-group:/aws/lambda/\$\{AWS::StackName\}-(?P<function>loop|worker|watchdog):\*$"
)

# Every DynamoDB action the lease store uses (`test_lease_store_calls_are_granted`); Query
# is not among them, so no role gets it.
_LEASES = ("GetItem", "PutItem", "UpdateItem", "DeleteItem", "Scan")
_XRAY = {"xray:PutTraceSegments": {"*"}, "xray:PutTelemetryRecords": {"*"}}

# function logical id -> action -> the resources it may name (logical ids, "log:<fn>", "*")
ALLOWED: dict[str, dict[str, set[str]]] = {
    "LoopFunction": {
        "logs:CreateLogStream": {"log:loop"},
        "logs:PutLogEvents": {"log:loop"},
        "sqs:ReceiveMessage": {"Queue"},
        "sqs:DeleteMessage": {"Queue"},
        "sqs:ChangeMessageVisibility": {"Queue"},
        "sqs:GetQueueAttributes": {"Queue"},
        "sqs:SendMessage": {"TokenFailureQueue"},
        "lambda:InvokeFunction": {"WorkerFunction"},
        "lambda:GetFunction": {"WorkerFunction"},
        "kinesis:PutRecord": {"TokenStream"},
        "kinesis:GetRecords": {"TokenStream"},
        "kinesis:GetShardIterator": {"TokenStream"},
        "kinesis:DescribeStream": {"TokenStream"},
        "kinesis:DescribeStreamSummary": {"TokenStream"},
        "kinesis:ListShards": {"TokenStream"},
        **{f"dynamodb:{op}": {"LeaseTable"} for op in _LEASES},
        **_XRAY,
    },
    "WatchdogFunction": {
        "logs:CreateLogStream": {"log:watchdog"},
        "logs:PutLogEvents": {"log:watchdog"},
        "sqs:GetQueueAttributes": {"Queue"},
        "kinesis:PutRecord": {"TokenStream"},
        **{f"dynamodb:{op}": {"LeaseTable"} for op in _LEASES},
        **_XRAY,
    },
    "WorkerFunction": {
        "logs:CreateLogStream": {"log:worker"},
        "logs:PutLogEvents": {"log:worker"},
        "sqs:DeleteMessage": {"Queue"},
        **_XRAY,
    },
}


def _resource_ref(value: Any) -> str:
    """A statement's resource, normalised: a logical id, ``log:<function>``, ``*`` or
    ``unrecognised:...`` (which no allow-list names)."""
    if value == "*":
        return "*"
    if isinstance(value, dict) and len(value) == 1:
        ((key, arg),) = value.items()
        if key == "Fn::GetAtt" and isinstance(arg, list) and len(arg) == 2 and arg[1] == "Arn":
            return str(arg[0])
        if key == "Fn::Sub" and isinstance(arg, str) and (match := _LOG_GROUP.match(arg)):
            return f"log:{match['function']}"
    return f"unrecognised:{value!r}"


def _branches(item: Any) -> Iterator[Any]:
    """The statements an item can become: both branches of an ``Fn::If``, minus NoValue."""
    if isinstance(item, dict) and set(item) == {"Fn::If"}:
        _, yes, no = item["Fn::If"]
        for branch in (yes, no):
            yield from _branches(branch)
    elif item != {"Ref": "AWS::NoValue"}:
        yield item


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def check_least_privilege(template: dict[str, Any]) -> list[str]:
    """Every way the template's IAM is broader than `ALLOWED`; empty when it is least privilege."""
    problems: list[str] = []
    resources: dict[str, Any] = template["Resources"]
    role_of: dict[str, str] = {}
    for name, res in resources.items():
        if res["Type"] == "AWS::Lambda::Function":
            role = res["Properties"].get("Role")
            if not (isinstance(role, dict) and "Fn::GetAtt" in role):
                problems.append(f"{name}: Role is not a role of this stack: {role!r}")
                continue
            role_of[name] = role["Fn::GetAtt"][0]
    if set(role_of) != set(ALLOWED):
        problems.append(f"functions {sorted(role_of)} != allow-listed {sorted(ALLOWED)}")
    roles = list(role_of.values())
    for role in {r for r in roles if roles.count(r) > 1}:
        problems.append(f"role {role} is shared by several functions: one role per function")
    function_of = {role: fn for fn, role in role_of.items()}

    statements: dict[str, list[Any]] = {role: [] for role in function_of}
    for name, res in resources.items():
        kind, props = res["Type"], res.get("Properties", {})
        if kind == "AWS::IAM::Role":
            if name not in function_of:
                problems.append(f"{name}: a role no function of this stack uses")
                continue
            if props.get("ManagedPolicyArns"):
                problems.append(f"{name}: managed policies are not least privilege")
            if props.get("PermissionsBoundary") is None and props.get("Path") not in (None, "/"):
                problems.append(f"{name}: unexpected Path")
            trust = props["AssumeRolePolicyDocument"]["Statement"]
            principals = [s.get("Principal") for s in trust]
            if principals != [{"Service": "lambda.amazonaws.com"}]:
                problems.append(f"{name}: trust policy is not lambda.amazonaws.com only")
            for policy in props.get("Policies", []):
                statements[name].extend(policy["PolicyDocument"]["Statement"])
        elif kind in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
            for role_ref in props.get("Roles", []):
                role = role_ref.get("Ref") if isinstance(role_ref, dict) else role_ref
                statements.setdefault(str(role), []).extend(props["PolicyDocument"]["Statement"])
        elif kind.startswith("AWS::IAM::"):
            problems.append(f"{name}: {kind} is not expected in this template")

    for role, items in statements.items():
        function = function_of.get(role)
        if function is None:
            problems.append(f"policy attached to {role}, which no function uses")
            continue
        allowed = ALLOWED.get(function, {})
        for item in items:
            for st in _branches(item):
                sid = st.get("Sid", "?")
                where = f"{function}/{sid}"
                for key in ("NotAction", "NotResource", "NotPrincipal"):
                    if key in st:
                        problems.append(f"{where}: {key} grants by exclusion")
                if st.get("Effect") != "Allow":
                    continue
                actions = [str(a) for a in _as_list(st.get("Action", []))]
                refs = [_resource_ref(r) for r in _as_list(st.get("Resource", []))]
                if not actions or not refs:
                    problems.append(f"{where}: a statement needs Action and Resource")
                for action in actions:
                    if "*" in action or "?" in action:
                        problems.append(f"{where}: wildcard action {action}")
                        continue
                    if action not in allowed:
                        problems.append(f"{where}: {action} is not allowed for {function}")
                        continue
                    for ref in refs:
                        if ref not in allowed[action]:
                            problems.append(
                                f"{where}: {action} on {ref} (allowed: {allowed[action]})"
                            )
    return problems


def test_policies_are_least_privilege(template: dict[str, Any]) -> None:
    # GIVEN the shipped template / WHEN its IAM is checked / THEN nothing is broader than listed
    assert check_least_privilege(template) == []


def _statements(t: dict[str, Any], role: str) -> list[Any]:
    result: list[Any] = t["Resources"][role]["Properties"]["Policies"][0]["PolicyDocument"][
        "Statement"
    ]
    return result


def _sid(t: dict[str, Any], role: str, sid: str) -> dict[str, Any]:
    for st in _statements(t, role):
        if isinstance(st, dict) and st.get("Sid") == sid:
            return st
    raise KeyError(sid)


def _wildcard_action(t: dict[str, Any]) -> None:
    _sid(t, "WorkerRole", "AckMessage")["Action"] = "sqs:*"


def _star_resource(t: dict[str, Any]) -> None:
    _sid(t, "LoopRole", "ConsumeQueue")["Resource"] = "*"


def _foreign_action(t: dict[str, Any]) -> None:
    _statements(t, "WorkerRole").append(
        {"Effect": "Allow", "Action": "lambda:InvokeFunction",
         "Resource": {"Fn::GetAtt": ["WorkerFunction", "Arn"]}}
    )  # fmt: skip


def _wrong_resource(t: dict[str, Any]) -> None:
    _sid(t, "WorkerRole", "AckMessage")["Resource"] = {"Fn::GetAtt": ["DeadLetterQueue", "Arn"]}


def _managed_policy(t: dict[str, Any]) -> None:
    t["Resources"]["LoopRole"]["Properties"]["ManagedPolicyArns"] = [
        "arn:aws:iam::aws:policy/AdministratorAccess"
    ]


def _table_wildcard(t: dict[str, Any]) -> None:
    _sid(t, "WatchdogRole", "Leases")["Resource"] = {
        "Fn::Sub": "arn:${AWS::Partition}:dynamodb:${AWS::Region}:${AWS::AccountId}:table/*"
    }


def _not_action(t: dict[str, Any]) -> None:
    _statements(t, "WatchdogRole").append(
        {"Effect": "Allow", "NotAction": "iam:*", "Resource": {"Fn::GetAtt": ["Queue", "Arn"]}}
    )


def _star_in_condition_branch(t: dict[str, Any]) -> None:
    for item in _statements(t, "LoopRole"):
        if isinstance(item, dict) and "Fn::If" in item:
            item["Fn::If"][1]["Action"].append("sqs:SendMessage")


def _shared_role(t: dict[str, Any]) -> None:
    t["Resources"]["WatchdogFunction"]["Properties"]["Role"] = {"Fn::GetAtt": ["LoopRole", "Arn"]}


def _other_log_group(t: dict[str, Any]) -> None:
    _sid(t, "WorkerRole", "Logs")["Resource"] = {
        "Fn::Sub": "arn:${AWS::Partition}:logs:${AWS::Region}:${AWS::AccountId}:log-group:*"
    }


def _extra_policy_resource(t: dict[str, Any]) -> None:
    t["Resources"]["Extra"] = {
        "Type": "AWS::IAM::Policy",
        "Properties": {
            "PolicyName": "extra",
            "Roles": [{"Ref": "WorkerRole"}],
            "PolicyDocument": {"Statement": [
                {"Effect": "Allow", "Action": "kinesis:PutRecord",
                 "Resource": {"Fn::GetAtt": ["TokenStream", "Arn"]}}
            ]},
        },
    }  # fmt: skip


@pytest.mark.parametrize(
    "broaden",
    [
        _wildcard_action,
        _star_resource,
        _foreign_action,
        _wrong_resource,
        _managed_policy,
        _table_wildcard,
        _not_action,
        _star_in_condition_branch,
        _shared_role,
        _other_log_group,
        _extra_policy_resource,
    ],
)
def test_broadened_copy_fails_the_check(
    template: dict[str, Any], broaden: Callable[[dict[str, Any]], None]
) -> None:
    # GIVEN a copy of the template with one permission broadened
    broadened = copy.deepcopy(template)
    broaden(broadened)
    # WHEN it is checked / THEN the check names a problem
    assert check_least_privilege(broadened) != []


def test_star_resources_carry_a_justifying_comment() -> None:
    # GIVEN the raw text / THEN each `Resource: "*"` has a comment saying why, just above it
    lines = TEMPLATE_PATH.read_text().splitlines()
    stars = [i for i, line in enumerate(lines) if re.search(r"Resource:\s*[\"']\*[\"']", line)]
    assert stars, "the Tracing statements are expected to need Resource '*'"
    for i in stars:
        block = "\n".join(lines[max(0, i - 5) : i])
        assert '# Resource "*" because' in block, f"line {i + 1}: no justification"


def test_lease_store_calls_are_granted(template: dict[str, Any]) -> None:
    # GIVEN the DynamoDB operations the lease store makes (calls and transaction entries)
    source = (PACKAGE_DIR / "_loop" / "lease_dynamodb.py").read_text()
    ops = set(re.findall(r'_call\(\s*"([a-z_]+)"', source))
    ops |= {f"{kind.lower()}_item" for kind in re.findall(r'\{\s*"(Update|Put|Delete)"', source)}
    ops.discard("create_table")  # the tests' setup, never the functions
    ops.discard("transact_write_items")  # authorised per entry (Put/Update/Delete)
    needed = {"dynamodb:" + "".join(w.title() for w in op.split("_")) for op in ops}
    assert needed, "expected to find the lease store's DynamoDB calls"
    # WHEN the loop's role is read / THEN each one is granted on the lease table
    granted = {
        a
        for st in _statements(template, "LoopRole")
        for s in _branches(st)
        if _resource_ref(s["Resource"]) == "LeaseTable"
        for a in _as_list(s["Action"])
    }
    assert needed <= granted, f"not granted: {needed - granted}"


# --------------------------------------------------------------------------- cfn-lint


def _lint(path: Path) -> list[str]:
    from cfnlint.api import ManualArgs, lint_file  # type: ignore[import-untyped]

    matches = lint_file(
        path, config=ManualArgs(regions=["us-east-1", "eu-west-1"], include_checks=["I"])
    )
    return [f"{m.rule.id} {m.message} (line {m.linenumber})" for m in matches]


def test_cfn_lint_passes() -> None:
    # GIVEN the shipped template / WHEN cfn-lint runs with informational checks / THEN no findings
    assert _lint(TEMPLATE_PATH) == []


def test_cfn_lint_catches_a_broken_copy(tmp_path: Path) -> None:
    # GIVEN a copy whose event source mapping asks for an impossible batch size
    broken = tmp_path / "broken.yaml"
    text = TEMPLATE_PATH.read_text()
    assert "      BatchSize: 1\n" in text
    broken.write_text(text.replace("      BatchSize: 1\n", "      BatchSize: 0\n"))
    # WHEN cfn-lint runs / THEN it reports it
    assert _lint(broken) != []


# --------------------------------------------------------------------------- wiring


def test_event_source_mapping_is_one_token_per_run_with_bounded_retries(
    template: dict[str, Any],
) -> None:
    esm = template["Resources"]["LoopEventSourceMapping"]["Properties"]
    assert esm["FunctionName"] == {"Ref": "LoopFunction"}
    assert esm["EventSourceArn"] == {"Fn::GetAtt": ["TokenStream", "Arn"]}
    assert esm["BatchSize"] == 1
    assert esm["MaximumRetryAttempts"] == {"Ref": "TokenMaxRetryAttempts"}
    assert esm["MaximumRecordAgeInSeconds"] == {"Ref": "TokenMaxRecordAgeSeconds"}
    assert esm["BisectBatchOnFunctionError"] is True
    assert esm["DestinationConfig"]["OnFailure"]["Destination"] == {
        "Fn::GetAtt": ["TokenFailureQueue", "Arn"]
    }
    # -1 would mean "retry forever": the parameters must not allow it
    params = template["Parameters"]
    assert params["TokenMaxRetryAttempts"]["MinValue"] >= 0
    assert params["TokenMaxRecordAgeSeconds"]["MinValue"] >= 60


def test_queue_redrives_to_the_dlq_and_schedule_runs_the_watchdog(
    template: dict[str, Any],
) -> None:
    res = template["Resources"]
    redrive = res["Queue"]["Properties"]["RedrivePolicy"]
    assert redrive["deadLetterTargetArn"] == {"Fn::GetAtt": ["DeadLetterQueue", "Arn"]}
    rule = res["WatchdogSchedule"]["Properties"]
    assert rule["ScheduleExpression"] == "rate(1 minute)"
    assert rule["Targets"][0]["Arn"] == {"Fn::GetAtt": ["WatchdogFunction", "Arn"]}
    permission = res["WatchdogPermission"]["Properties"]
    assert permission["Principal"] == "events.amazonaws.com"
    assert permission["SourceArn"] == {"Fn::GetAtt": ["WatchdogSchedule", "Arn"]}


def test_alarms_watch_the_dlq_and_the_heartbeat(template: dict[str, Any]) -> None:
    res = template["Resources"]
    dlq = res["DeadLetterQueueAlarm"]["Properties"]
    assert dlq["Dimensions"][0]["Value"] == {"Fn::GetAtt": ["DeadLetterQueue", "QueueName"]}
    assert (dlq["Threshold"], dlq["ComparisonOperator"]) == (0, "GreaterThanThreshold")
    beat = res["LoopHeartbeatAlarm"]["Properties"]
    assert beat["Namespace"] == {"Ref": "MetricsNamespace"}
    assert beat["TreatMissingData"] == "breaching"
    assert (beat["Statistic"], beat["Threshold"]) == ("SampleCount", 1)


def test_heartbeat_alarm_matches_what_the_loop_emits(template: dict[str, Any]) -> None:
    # GIVEN the EMF record a loop run writes (the loop runner's own function, real settings)
    from asyncloop._emf import NAMESPACE

    source = "".join((PACKAGE_DIR / "_loop" / f).read_text() for f in ("runner.py", "settings.py"))
    beat = template["Resources"]["LoopHeartbeatAlarm"]["Properties"]
    # THEN the alarm's metric is one every run emits, under the dimension the runner uses
    assert 'metrics["generation"] = run.generation' in source
    assert beat["MetricName"] == "generation"
    assert re.search(r'dimensions=\{"Queue": ', source)
    assert [d["Name"] for d in beat["Dimensions"]] == ["Queue"]
    assert beat["Dimensions"][0]["Value"] == {"Fn::GetAtt": ["Queue", "QueueName"]}
    assert template["Parameters"]["MetricsNamespace"]["Default"] == NAMESPACE


def test_only_types_moto_lacks_are_conditional_on_full_stack(template: dict[str, Any]) -> None:
    # moto 5.2's CloudFormation skips (with a warning) the types it does not implement; the
    # template leaves exactly those out under MotoCompatible=true, and nothing else.
    from moto.cloudformation.parsing import get_model_map

    supported = set(get_model_map())
    conditions = template["Conditions"]
    assert {"Condition": "FullStack"} in conditions["WatchHeartbeat"]["Fn::And"]
    for name, res in template["Resources"].items():
        if res.get("Condition") in ("FullStack", "WatchHeartbeat"):
            assert res["Type"] not in supported, f"{name}: moto supports it, drop the condition"
        else:
            assert res["Type"] in supported, f"{name}: {res['Type']} would be skipped by moto"


def test_lease_table_key_matches_the_lease_store(template: dict[str, Any]) -> None:
    source = (PACKAGE_DIR / "_loop" / "lease_dynamodb.py").read_text()
    key = template["Resources"]["LeaseTable"]["Properties"]["KeySchema"]
    assert key == [{"AttributeName": "loop_id", "KeyType": "HASH"}]
    assert '"AttributeName": "loop_id", "KeyType": "HASH"' in source


def _module_functions(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names.update(t.id for t in node.targets if isinstance(t, ast.Name))
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
        elif isinstance(node, ast.ImportFrom):
            names.update(a.asname or a.name for a in node.names)
    return names


def test_handlers_exist(template: dict[str, Any]) -> None:
    # GIVEN every Handler the template names, with the worker's default
    res = template["Resources"]
    handlers = [
        res["LoopFunction"]["Properties"]["Handler"],
        res["WatchdogFunction"]["Properties"]["Handler"],
        template["Parameters"]["WorkerHandler"]["Default"],
    ]
    for handler in handlers:
        module, _, function = handler.rpartition(".")
        path = PACKAGE_DIR.parent / (module.replace(".", "/") + ".py")
        # THEN the module exists in the package and defines the function
        assert path.is_file(), handler
        assert function in _module_functions(path), handler


def _names_read_by_asyncloop() -> set[str]:
    from dataclasses import fields

    from asyncloop._config import AwsConfig, ConsumerConfig, LambdaConfig
    from asyncloop._loop.control import LoopPolicy

    names = {
        "ASYNCLOOP_" + f.name.upper()
        for cls in (ConsumerConfig, LambdaConfig, AwsConfig, LoopPolicy)
        for f in fields(cls)
    }
    for path in PACKAGE_DIR.rglob("*.py"):
        names |= set(re.findall(r"ASYNCLOOP_[A-Z_]+[A-Z]", path.read_text()))
    return names


def test_every_environment_variable_is_read_by_asyncloop(template: dict[str, Any]) -> None:
    # GIVEN the variables the template sets / THEN asyncloop reads each (no silent typo)
    known = _names_read_by_asyncloop()
    for name, res in template["Resources"].items():
        if res["Type"] != "AWS::Lambda::Function":
            continue
        variables = res["Properties"].get("Environment", {}).get("Variables", {})
        unknown = set(variables) - known
        assert not unknown, f"{name} sets variables asyncloop never reads: {sorted(unknown)}"


def test_template_parameters_reader_matches_yaml(template: dict[str, Any]) -> None:
    assert template_parameters() == tuple(template["Parameters"])
    # CreateStack takes a TemplateBody of at most 51,200 bytes
    assert len(template_body().encode()) < 51_200


def test_template_ships_in_the_wheel_where_deploy_reads_it(tmp_path: Path) -> None:
    # GIVEN the wheel hatchling builds from this source tree (what pip installs)
    import subprocess
    import sys
    import zipfile

    built = subprocess.run(
        [sys.executable, "-m", "hatchling", "build", "-t", "wheel", "-d", str(tmp_path / "dist")],
        cwd=PACKAGE_DIR.parent, capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr
    (wheel,) = (tmp_path / "dist").glob("asyncloop-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        zf.extractall(tmp_path / "site")
    # THEN the template is in it, byte for byte...
    assert "asyncloop/_deploy/templates/asyncloop.yaml" in names
    shipped = tmp_path / "site" / "asyncloop" / "_deploy" / "templates" / "asyncloop.yaml"
    assert shipped.read_bytes() == TEMPLATE_PATH.read_bytes()
    # ... and `asyncloop deploy`, run from the installed wheel, reads it from there
    probe = (
        "import sys; sys.path.insert(0, sys.argv[1]);"
        "import asyncloop; from asyncloop._deploy.spec import template_body;"
        "assert asyncloop.__file__.startswith(sys.argv[1]), asyncloop.__file__;"
        "sys.stdout.write(template_body())"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run(
        [sys.executable, "-c", probe, str(tmp_path / "site")],
        cwd=tmp_path, env=env, capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout == TEMPLATE_PATH.read_text()


def test_loop_and_watchdog_concurrency_is_capped_beneath_the_lease(
    template: dict[str, Any],
) -> None:
    res = template["Resources"]
    loop = res["LoopFunction"]["Properties"]
    # The loop function's cap comes from MaxLoops through the mapping...
    assert loop["ReservedConcurrentExecutions"] == {
        "Fn::FindInMap": ["LoopConcurrency", {"Ref": "MaxLoops"}, "Reserved"]
    }
    # ...which has a row for every MaxLoops the parameter allows, each 2 x MaxLoops + 1:
    # a run per live loop, a stale copy exiting beside each, one direct invoke
    max_loops = template["Parameters"]["MaxLoops"]
    rows = template["Mappings"]["LoopConcurrency"]
    allowed = [n for n in range(0, 1000) if re.fullmatch(max_loops["AllowedPattern"], str(n))]
    assert allowed == list(range(1, 101))
    assert sorted(rows, key=int) == [str(n) for n in allowed]
    assert all(rows[str(n)] == {"Reserved": 2 * n + 1} for n in allowed)
    # The default leaves room for every live loop's run: the cap never throttles a loop
    assert rows[max_loops["Default"]]["Reserved"] > int(max_loops["Default"])
    # AND one watchdog at a time
    assert res["WatchdogFunction"]["Properties"]["ReservedConcurrentExecutions"] == 1
