"""`deploy` (`asyncloop._deploy.deploy`) on the CloudFormation paths moto cannot produce: a
failed create, a stack left ROLLBACK_COMPLETE, a busy stack, "No updates are to be performed".

They run against a small fake of S3, STS and CloudFormation; the real stack on moto's server is
tests/integration/test_deploy_moto.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from asyncloop._deploy.package import PackageSpec, build_package


@pytest.fixture
def code_zip(tmp_path: Path) -> Path:
    out = tmp_path / "code.zip"
    build_package(PackageSpec(output=out, architecture="x86_64", include_dependencies=False))
    return out


class _FakeAws:
    """S3, STS and CloudFormation enough for `deploy`: the stack goes through `statuses`."""

    def __init__(
        self, *, existing: str | None, statuses: list[str], update_error: str = ""
    ) -> None:
        self.existing = existing
        self.statuses = statuses
        self.update_error = update_error
        self.calls: list[str] = []

    async def client(self, service: str) -> Any:
        return self

    async def head_bucket(self, **kw: Any) -> dict[str, Any]:
        return {}

    async def head_object(self, **kw: Any) -> dict[str, Any]:
        return {}

    async def get_caller_identity(self) -> dict[str, Any]:
        return {"Account": "123456789012"}

    async def describe_stacks(self, StackName: str) -> dict[str, Any]:
        self.calls.append("describe")
        if self.existing is None and not self.statuses:
            raise _client_error("DescribeStacks", f"Stack with id {StackName} does not exist")
        status = self.existing if self.existing is not None else self.statuses.pop(0)
        if status == "GONE":
            raise _client_error("DescribeStacks", f"Stack with id {StackName} does not exist")
        outputs = [{"OutputKey": "QueueUrl", "OutputValue": "https://q"}]
        return {"Stacks": [{"StackId": "id-1", "StackStatus": status, "Outputs": outputs}]}

    async def describe_stack_events(self, StackName: str) -> dict[str, Any]:
        return {
            "StackEvents": [
                {
                    "LogicalResourceId": "LoopFunction",
                    "ResourceStatus": "CREATE_FAILED",
                    "ResourceStatusReason": "Runtime python3.13 is not supported here",
                }
            ]
        }

    async def create_stack(self, **kw: Any) -> None:
        self.calls.append("create")
        self.existing = None

    async def update_stack(self, **kw: Any) -> None:
        self.calls.append("update")
        if self.update_error:
            raise _client_error("UpdateStack", self.update_error)
        self.existing = None

    async def delete_stack(self, StackName: str) -> None:
        self.calls.append("delete")
        self.existing = None


def _client_error(operation: str, message: str) -> Exception:
    from botocore.exceptions import ClientError

    error = {"Error": {"Code": "ValidationError", "Message": message}}
    exc: Exception = ClientError(error, operation)
    return exc


async def _deploy_fake(code_zip: Path, fake: _FakeAws) -> Any:
    from asyncloop._config import AwsConfig
    from asyncloop._deploy.deploy import deploy
    from asyncloop._deploy.spec import DeploySpec

    spec = DeploySpec(zip_path=code_zip, bucket="code-bucket", poll_interval=0.01, timeout=5)
    return await deploy(spec, AwsConfig(region="eu-west-1"), clients=fake)


@pytest.mark.asyncio
async def test_no_updates_is_success(code_zip: Path) -> None:
    # GIVEN a complete stack that AWS says needs no update
    fake = _FakeAws(
        existing="UPDATE_COMPLETE", statuses=[], update_error="No updates are to be performed."
    )
    # WHEN deploy runs / THEN it reports "unchanged" with the outputs, and does not wait
    result = await _deploy_fake(code_zip, fake)
    assert (result.action, result.status) == ("unchanged", "UPDATE_COMPLETE")
    assert result.outputs == {"QueueUrl": "https://q"}
    assert fake.calls == ["describe", "update"]


@pytest.mark.asyncio
async def test_other_update_errors_are_failures(code_zip: Path) -> None:
    from asyncloop._exceptions import AwsError

    fake = _FakeAws(existing="UPDATE_COMPLETE", statuses=[], update_error="Template error")
    with pytest.raises(AwsError, match="Template error"):
        await _deploy_fake(code_zip, fake)


@pytest.mark.asyncio
async def test_rollback_complete_is_deleted_then_created(code_zip: Path) -> None:
    # GIVEN a stack left ROLLBACK_COMPLETE by a failed first create
    fake = _FakeAws(
        existing="ROLLBACK_COMPLETE",
        statuses=["DELETE_IN_PROGRESS", "GONE", "CREATE_IN_PROGRESS", "CREATE_COMPLETE"],
    )
    # WHEN deploy runs / THEN it deletes it, waits, creates, waits
    result = await _deploy_fake(code_zip, fake)
    assert result.action == "created"
    assert result.status == "CREATE_COMPLETE"
    assert fake.calls[:2] == ["describe", "delete"]
    assert "create" in fake.calls


@pytest.mark.asyncio
async def test_failed_create_raises_with_the_failed_resources(code_zip: Path) -> None:
    from asyncloop._deploy.deploy import DeployError

    fake = _FakeAws(existing=None, statuses=[])
    fake.statuses = []
    # the first describe finds nothing; after create the stack rolls back
    original = fake.create_stack

    async def create(**kw: Any) -> None:
        await original(**kw)
        fake.statuses[:] = ["CREATE_IN_PROGRESS", "ROLLBACK_IN_PROGRESS", "ROLLBACK_COMPLETE"]

    fake.create_stack = create  # type: ignore[method-assign]
    with pytest.raises(DeployError) as caught:
        await _deploy_fake(code_zip, fake)
    assert caught.value.status == "ROLLBACK_COMPLETE"
    assert "LoopFunction: CREATE_FAILED: Runtime python3.13" in str(caught.value)


@pytest.mark.asyncio
async def test_busy_stack_is_refused(code_zip: Path) -> None:
    from asyncloop._deploy.deploy import DeployError

    fake = _FakeAws(existing="UPDATE_IN_PROGRESS", statuses=[])
    with pytest.raises(DeployError, match="busy"):
        await _deploy_fake(code_zip, fake)
    assert "update" not in fake.calls
