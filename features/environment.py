"""behave runs against the real system: one `cynode serve --role all` on embedded defaults for the whole run,
plus extra processes that single scenarios start themselves (role splits, kill tests) and stop after."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.support.system import ServeProcess  # noqa: E402


def before_all(context):
    context.admin_password = "admin-password-for-features"
    context.psk = "feature-psk-0123456789abcdef0123456789abcdef"
    context.system = ServeProcess("all", name="system", env={
        "CYNODE_ADMIN_PASSWORD": context.admin_password,
        "CYNODE_NODE_REGISTRATION_PSK": context.psk,
        "NODE_SLUG": "local",
        # Short enough for the timeout scenario; prompt answers kept short so the built-in model is quick.
        "CYNODE_SANDBOX_DEFAULT_TIMEOUT_S": "15",
        "CYNODE_INFERENCE_MAX_ANSWER_TOKENS": "32",
        "CYNODE_SCHEDULER_POLL_INTERVAL_MS": "250",
    }).start()
    context.system.wait_accepting(timeout=120)
    context.gateway = context.system.url("gateway")


def before_scenario(context, scenario):
    context.extra_processes = []
    context.tmp_dirs = []


def after_scenario(context, scenario):
    for p in context.extra_processes:
        p.stop()
    for d in context.tmp_dirs:
        shutil.rmtree(d, ignore_errors=True)


def after_all(context):
    code = context.system.stop()
    if code != 0:
        print(context.system.log()[-3000:])
    shutil.rmtree(context.system.dir, ignore_errors=True)
