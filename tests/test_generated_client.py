"""A client generated from the published OpenAPI document, with typed models, pushes a record.

openapi-python-client (a test dependency) generates a package from the app's own document into a
temporary directory; the test imports it, activates a tablet and pushes one interview record built
as the generated ``InterviewRecord`` model, through httpx's WSGI transport into the app (the same
app and database connection as WebTest), on both databases.
"""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session
from test_sync_support import SyncWorld, make_record, new_uuid

from surveykit import openapi
from surveykit.accounts import services as account_services
from surveykit.participants import ids
from surveykit.sync.models import Interview

PACKAGE = "surveykit_generated_client"


@pytest.fixture(scope="module")
def generated(app: Any, tmp_path_factory: pytest.TempPathFactory) -> Any:
    where = tmp_path_factory.mktemp("generated")
    document = where / "openapi.json"
    document.write_text(json.dumps(openapi.build_document(app.registry)), encoding="utf-8")
    generator = Path(sys.executable).parent / "openapi-python-client"
    subprocess.run(
        [str(generator), "generate", "--path", str(document), "--output-path", str(where / PACKAGE)]
        + ["--meta", "none"],
        check=True,
        capture_output=True,
        timeout=300,
    )
    sys.path.insert(0, str(where))
    try:
        yield importlib.import_module(PACKAGE)
    finally:
        sys.path.remove(str(where))
        for name in [name for name in sys.modules if name.split(".")[0] == PACKAGE]:
            del sys.modules[name]


def test_a_generated_client_activates_a_tablet_and_pushes_a_typed_record(
    generated: Any, app: Any, connection: Any, accounts: Any, dbsession: Session
) -> None:
    api = importlib.import_module(f"{PACKAGE}.api.devices.device_activate_post")
    sync_post = importlib.import_module(f"{PACKAGE}.api.sync.sync_post")
    models = importlib.import_module(f"{PACKAGE}.models")
    world = SyncWorld(accounts, dbsession)
    owner = accounts.user("generated-client-owner", "fieldworker", "ocsea", ["KE"])
    device, code = account_services.enrol_device(dbsession, owner, "typed tablet", "tests", accounts.policy)
    dbsession.flush()
    transport = {"transport": httpx.WSGITransport(app=app)}
    anonymous = generated.Client(base_url="http://surveykit.test", httpx_args=transport)

    activated = api.sync(client=anonymous, body=models.DeviceActivatePostBody(code=code))
    assert isinstance(activated, models.DeviceActivatePostResponse200), activated
    block = ids.reserve_block(dbsession, activated.device_id, world.study.id, "RA1", "KE", 5)
    dbsession.flush()

    record = models.InterviewRecord.from_dict(make_record(block.first_number))
    assert isinstance(record.participants[0], models.InterviewRecordParticipantsItem)
    assert record.status == models.InterviewRecordStatus.COMPLETE
    uuid = new_uuid()
    body = models.SyncPostBody(changes=[models.Change(uuid=uuid, base_revision=0, record=record)])
    tablet = generated.AuthenticatedClient(
        base_url="http://surveykit.test", token=activated.access_token, httpx_args=transport
    )
    outcome = sync_post.sync(client=tablet, body=body)

    assert isinstance(outcome, models.SyncPostResponse200), outcome
    (result,) = outcome.results
    assert isinstance(result, models.SyncResultCreated)
    assert (result.uuid, result.revision) == (uuid, 1)
    stored = dbsession.scalar(select(Interview).where(Interview.uuid == uuid))
    assert stored is not None and stored.record == make_record(block.first_number)
