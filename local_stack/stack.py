"""The local stack: moto + upstream + API Gateway emulation + the real handlers, in one process.

Start order matters: the handlers read their environment (and Powertools picks its log stream)
when they are imported, so moto, the upstream and the environment come first, then the handlers,
then the demo token, then the HTTP port.

One LocalStack per process: like a warm Lambda container, the handler modules keep their boto3
clients and cached settings for the life of the process.
"""
from __future__ import annotations

import json
import os
import sys
import time
import urllib.error
import urllib.request
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import IO, Any

from local_stack import aws, persistence
from local_stack.apigw import ApiGateway
from local_stack.template import Template, TemplateError
from local_stack.upstream import Upstream, start_upstream

REPO_ROOT = Path(__file__).resolve().parent.parent

# Template environment variables and where their local values come from. The stack fills these
# five itself; the others take the template's own value (parameter defaults). A name in neither
# list stops the start: the local stack must learn about it rather than leave it unset.
STACK_OWNED = {"TABLE_NAME", "IMAGE_BUCKET", "UPSTREAM_BASE_URL", "UPSTREAM_API_KEY_SECRET_ID", "AWS_ENDPOINT_URL"}
FROM_TEMPLATE = {"IMAGE_URL_TTL_SECONDS", "REQUEST_TIMEOUT_SECONDS", "STREAMING_TIMEOUT_SECONDS",
                 "RECORD_RETENTION_DAYS", "PRICE_MULTIPLIER"}
FROM_TEMPLATE_PREFIXES = ("POWERTOOLS_",)
# For the Lambda runtime only: the local stack calls the handlers in process (with its own response
# stream for streaming routes), so these are not set for them.
RUNTIME_ONLY = {"AWS_LAMBDA_EXEC_WRAPPER"}

READY_TIMEOUT_S = 30


class StackError(Exception):
    """The local stack cannot start as configured."""


def parse_parameter_overrides(text: str) -> dict[str, str]:
    """`Key=Value Key2=Value2`, as `sam deploy --parameter-overrides` takes them."""
    overrides = {}
    for item in text.split():
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise StackError(f"GATEWAY_PARAMETER_OVERRIDES: {item!r} is not Key=Value")
        overrides[key] = value
    return overrides


class LocalStack:
    def __init__(self, environ: dict[str, str] | None = None, console: IO[str] | None = None):
        env = dict(os.environ if environ is None else environ)
        self.console = console or sys.stdout
        try:
            self.port = int(env.get("GATEWAY_PORT") or 3000)
            self.demo_balance = Decimal(env.get("GATEWAY_DEMO_BALANCE_USD") or "10")
        except (ValueError, InvalidOperation) as bad:
            raise StackError(f"GATEWAY_PORT / GATEWAY_DEMO_BALANCE_USD: {bad}") from None
        self.demo_secret = env.get("GATEWAY_DEMO_TOKEN") or None
        storage = (env.get("GATEWAY_STORAGE") or "on").lower()
        if storage not in ("on", "off"):
            raise StackError(f"GATEWAY_STORAGE must be on or off, not {storage!r}")
        self.storage = storage == "on"
        self.upstream_url = env.get("UPSTREAM_BASE_URL") or None
        self._upstream_key = env.get("UPSTREAM_API_KEY") or None
        self.show_metrics = env.get("GATEWAY_SHOW_METRICS") == "1"
        self.template_path = Path(env.get("GATEWAY_TEMPLATE") or REPO_ROOT / "template.yaml")
        self.parameter_overrides = parse_parameter_overrides(env.get("GATEWAY_PARAMETER_OVERRIDES", ""))
        # Function logs: .local/gateway.log by default, GATEWAY_LOG=stdout for the console, or a path.
        log = env.get("GATEWAY_LOG") or ""
        self.log_path: Path | None = (None if log.lower() == "stdout" else Path(log) if log
                                      else self.template_path.resolve().parent / ".local" / "gateway.log")
        # Tokens, balances and records survive a restart (local_stack/persistence.py), unless asked not to.
        self.data_dir = Path(env.get("GATEWAY_DATA_DIR") or self.template_path.resolve().parent / ".local" / "data")
        self.fresh = env.get("GATEWAY_FRESH") == "1"
        self.restored_items = 0
        self._autosave: persistence.Autosave | None = None

        # The state for other tools on this machine (`python -m admin --local`): always written once
        # ready, removed on stop; GATEWAY_STATE_FILE, when set, is written as well (by __main__).
        self.published_state_path = self.template_path.resolve().parent / ".local" / "stack.json"
        self._published: Path | None = None

        # Filled by start().
        self.template: Template | None = None
        self.base_url = ""  # http://127.0.0.1:PORT/v1
        self.token = ""
        self.token_id = ""
        self.emulator = None
        self.upstream: Upstream | None = None
        self.moto_endpoint = ""
        self.table = ""
        self.bucket = ""
        self.secret_id = ""
        self.function_environment: dict[str, str] = {}  # what every function's process sees
        self._moto: aws.MotoServer | None = None
        self._gateway: ApiGateway | None = None
        self._log_file: IO[str] | None = None
        self._saved_streams: tuple[IO[str], IO[str]] | None = None
        self._saved_env: dict[str, str | None] = {}

    # -- start --

    def start(self) -> "LocalStack":
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        template = self._load_template()
        api = template.api  # routes, limits, gateway responses: fails here if the template is off
        table = template.table()
        if table is None:
            raise StackError(f"{self.template_path.name} has no GatewayTable (AWS::DynamoDB::Table)")
        environment = template.environment()
        environment = {name: value for name, value in environment.items() if name not in RUNTIME_ONLY}
        unknown = sorted(name for name in environment
                         if name not in STACK_OWNED | FROM_TEMPLATE and not name.startswith(FROM_TEMPLATE_PREFIXES))
        if unknown:
            raise StackError(f"{self.template_path.name} sets environment variables the local stack does not know how to "
                             f"fill: {', '.join(unknown)} (teach local_stack/stack.py about them)")

        # Bind the port first: a taken port fails the start before anything else runs. The access
        # log starts after the readiness probe, which is not the user's request.
        try:
            self._gateway = ApiGateway(api, "127.0.0.1", self.port, access_log=None)
        except OSError as error:
            raise StackError(f"cannot listen on 127.0.0.1:{self.port} ({error.strerror}); "
                             "set GATEWAY_PORT to another port, or 0 for any free one") from None

        self._isolate_environment()
        self._moto = aws.MotoServer()
        self.moto_endpoint = self._moto.start()
        self.upstream = start_upstream(self.upstream_url, self._upstream_key)
        self.emulator = self.upstream.emulator
        resources = aws.provision(self.moto_endpoint, table, self.storage, self.upstream.api_key)
        self.table, self.bucket, self.secret_id = resources.table, resources.bucket, resources.secret_arn

        self._set_environment(template, environment)
        self._route_function_logs()

        code_dirs = {str(route.code_uri) for route in api.routes}
        for code_dir in sorted(code_dirs):
            if code_dir not in sys.path:
                sys.path.insert(0, code_dir)
        self._gateway.function_log = self._log_file or self.console
        self._gateway.load()  # imports the handlers, as a cold start would
        self._restore_state()
        self._ensure_demo_token()
        self._autosave = persistence.Autosave(persistence.TableSnapshot(self.moto_endpoint, self.table,
                                                                        self.data_dir)).start()
        self._gateway.start()
        self.base_url = f"{self._gateway.url}/v1"
        self._wait_until_ready()
        self._gateway.access_log = self.console
        self._publish_state()

    def _load_template(self) -> Template:
        if not self.template_path.is_file():
            raise StackError(f"{self.template_path} not found")
        parameters = dict(self.parameter_overrides)
        probe = Template(self.template_path)
        if "ImageStorage" in probe.parameters:
            parameters.setdefault("ImageStorage", "Enabled" if self.storage else "Disabled")
        if self.upstream_url and "UpstreamBaseUrl" in probe.parameters:
            parameters["UpstreamBaseUrl"] = self.upstream_url
        template = Template(self.template_path, parameters)
        if self.storage and not template.active("ImageBucket"):
            # The deployed stack would have no bucket either: serve b64_json only.
            self.storage = False
        self.template = template
        return template

    def _isolate_environment(self) -> None:
        """No AWS account: the developer's profiles, sessions and endpoints (~/.aws, AWS_PROFILE,
        AWS_ENDPOINT_URL_S3 ...) must not reach boto3, ours or the functions'. Done first, before
        any boto3 session exists. The upstream key lives in the secret only, never in the env."""
        removed = [name for name in os.environ
                   if name in ("AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN",
                               "UPSTREAM_API_KEY")
                   or name.startswith("AWS_ENDPOINT_URL_")]
        for name in removed:
            self._saved_env.setdefault(name, os.environ.pop(name))
        self._export({
            "AWS_CONFIG_FILE": os.devnull,
            "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
            "AWS_DEFAULT_REGION": aws.REGION,
            "AWS_REGION": aws.REGION,
            "AWS_ACCESS_KEY_ID": aws.DUMMY_CREDENTIALS["aws_access_key_id"],
            "AWS_SECRET_ACCESS_KEY": aws.DUMMY_CREDENTIALS["aws_secret_access_key"],
        })

    def _export(self, values: dict[str, str]) -> None:
        for name, value in values.items():
            self._saved_env.setdefault(name, os.environ.get(name))
            os.environ[name] = value

    def _set_environment(self, template: Template, environment: dict[str, Any]) -> None:
        """The functions' environment: the template's Globals, with the local resources."""
        refs = {"GatewayTable": self.table, "UpstreamApiKeySecret": self.secret_id}
        if self.bucket:
            refs["ImageBucket"] = self.bucket
        values: dict[str, str] = {}
        for name, expression in environment.items():
            # Resolve even the names the stack fills itself: a dangling !Ref fails here, not in AWS.
            values[name] = str(template.resolve(expression, refs=refs))
        values.update({
            "TABLE_NAME": self.table,
            "IMAGE_BUCKET": self.bucket,
            "UPSTREAM_BASE_URL": self.upstream.base_url,
            "UPSTREAM_API_KEY_SECRET_ID": self.secret_id,
            # boto3 sends every call to moto; the function code has no local-only branch.
            "AWS_ENDPOINT_URL": self.moto_endpoint,
            "POWERTOOLS_TRACE_DISABLED": "true",
            "POWERTOOLS_METRICS_DISABLED": "false" if self.show_metrics else "true",
        })
        self.function_environment = values
        self._export(values)

    def _route_function_logs(self) -> None:
        """Powertools logs to sys.stdout as it is when a Logger is created (at handler import):
        point sys.stdout, and sys.stderr for the functions' warnings, at .local/gateway.log (as
        Lambda sends both to CloudWatch), so that the console shows only the access lines."""
        if self.log_path is None:
            return
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log_file = open(self.log_path, "a", encoding="utf-8", buffering=1)  # noqa: SIM115
        self._saved_streams = (sys.stdout, sys.stderr)
        sys.stdout = sys.stderr = self._log_file

    def _restore_state(self) -> None:
        if self.fresh:
            for name in (persistence.TABLE_FILE, persistence.DEMO_TOKEN_FILE):
                (self.data_dir / name).unlink(missing_ok=True)
        try:
            self.restored_items = persistence.TableSnapshot(self.moto_endpoint, self.table, self.data_dir).restore()
        except persistence.SnapshotError as problem:
            raise StackError(str(problem)) from None

    def _ensure_demo_token(self) -> None:
        """The same demo token from start to start (saved beside the table), funded once."""
        from common.billing.ledger import DynamoLedger
        from common.billing.tokens import hash_secret, issue_token, new_secret

        ledger = DynamoLedger(self.table, aws.client("dynamodb", self.moto_endpoint))
        secret = persistence.demo_secret(self.data_dir, self.demo_secret, new_secret())
        existing = ledger.get_token(hash_secret(secret))
        if existing is not None:
            self.token, self.token_id, self.demo_balance = secret, existing.token_id, existing.balance_usd
            return
        issued = issue_token(ledger, name="local-demo", balance_usd=self.demo_balance, secret=secret)
        self.token, self.token_id = issued.secret, issued.token_id

    def _wait_until_ready(self) -> None:
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: no proxy
        request = urllib.request.Request(f"{self.base_url}/models",
                                         headers={"Authorization": f"Bearer {self.token}"})
        deadline = time.monotonic() + READY_TIMEOUT_S
        last = ""
        while time.monotonic() < deadline:
            try:
                with opener.open(request, timeout=5) as response:
                    if response.status == 200:
                        return
                    last = f"HTTP {response.status}"
            except urllib.error.HTTPError as error:
                last = f"HTTP {error.code}: {error.read(300).decode('utf-8', 'replace')}"
            except OSError as error:
                last = str(error)
            time.sleep(0.1)
        raise StackError(f"GET /v1/models with the demo token never answered 200 (last: {last})")

    # -- stop --

    def stop(self) -> None:
        """Stop everything start() started, in reverse order; safe to call twice."""
        self._unpublish_state()
        if self._gateway is not None:
            self._gateway.stop()
            self._gateway = None
        if self._autosave is not None:
            try:
                self._autosave.stop()  # the last save, after the last request
            except Exception as problem:  # noqa: BLE001 - stopping must go on
                print(f"local stack: could not save the local state: {problem}", file=sys.__stderr__)
            self._autosave = None
        if self.upstream is not None:
            self.upstream.stop()
            self.upstream = None
        if self._moto is not None:
            self._moto.stop()
            self._moto = None
        if self._saved_streams is not None:
            sys.stdout, sys.stderr = self._saved_streams
            self._saved_streams = None
        if self._log_file is not None:
            # Flushed, not closed: a function still running after its 504 may log a last line.
            self._log_file.flush()
            self._log_file = None
        for name, value in self._saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        self._saved_env.clear()

    # -- reporting --

    @property
    def gateway_url(self) -> str:
        return self.base_url.removesuffix("/v1")

    def state(self) -> dict[str, Any]:
        return {
            "base_url": self.base_url,
            "token": self.token,
            "token_id": self.token_id,
            "emulator_url": self.emulator.base_url if self.emulator else None,
            "emulator_api_key": self.emulator.api_key if self.emulator else None,
            "upstream_url": self.upstream.base_url if self.upstream else None,
            "moto_endpoint": self.moto_endpoint,
            "table": self.table,
            "bucket": self.bucket or None,
            "secret_id": self.secret_id,
            "log_file": str(self.log_path) if self.log_path else None,
            "data_dir": str(self.data_dir),
            "environment": self.function_environment,
            "pid": os.getpid(),
        }

    def write_state(self, path: str | Path) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + ".tmp")
        partial.write_text(json.dumps(self.state(), indent=2) + "\n", encoding="utf-8")
        partial.replace(path)  # atomic: a reader never sees half a file

    def _publish_state(self) -> None:
        """Write .local/stack.json, unless another stack that is still running wrote it (a test's
        stack must not hide the developer's `make run`)."""
        path = self.published_state_path
        owner = _state_pid(path)
        if owner is not None and owner != os.getpid() and is_running(owner):
            return
        try:
            self.write_state(path)
        except OSError as error:  # a read-only checkout still runs; only the tools lose the shortcut
            print(f"note: cannot write {path} ({error.strerror})", file=self.console)
            return
        self._published = path

    def _unpublish_state(self) -> None:
        path, self._published = self._published, None
        if path is not None and _state_pid(path) == os.getpid():
            path.unlink(missing_ok=True)

    @staticmethod
    def _shown(path: Path) -> str:
        try:
            return str(path.resolve().relative_to(Path.cwd()))
        except ValueError:
            return str(path)

    def banner(self) -> str:
        base = self.gateway_url
        storage = (f"on (bucket {self.bucket}; response_format=url answers presigned moto URLs)"
                   if self.bucket else "off (b64_json only)")
        logs = str(self.log_path) if self.log_path else "stdout"
        restored = f"{self.restored_items} items restored" if self.restored_items else "new"
        curl = (f"curl -sS {base}/v1/images/generations -H \"Authorization: Bearer {self.token}\" "
                "-H \"Content-Type: application/json\" "
                "-d '{\"model\":\"gpt-image-2\",\"prompt\":\"A futuristic skyline at dusk\",\"size\":\"1024x1024\"}' "
                "| python3 -c 'import sys,json,base64; open(\"image.png\",\"wb\").write("
                "base64.b64decode(json.load(sys.stdin)[\"data\"][0][\"b64_json\"]))'")
        return "\n".join([
            "",
            "image-gateway is running locally (API Gateway + Lambda handlers + moto, no Docker, no AWS).",
            "",
            f"  base URL   {self.base_url}",
            f"  token      {self.token}   (balance ${self.demo_balance})",
            f"  storage    {storage}",
            f"  upstream   {self.upstream.description if self.upstream else '-'}",
            f"  moto       {self.moto_endpoint}   (table {self.table})",
            f"  state      {self._shown(self.data_dir)}: {restored}; kept across restarts (GATEWAY_FRESH=1 starts clean)",
            f"  logs       function logs -> {logs}; one access line per request below",
            "",
            "Generate an image and save it as image.png:",
            "",
            f"  export BASE_URL={base} TOKEN={self.token}   # for the other examples in the docs",
            f"  {curl}",
            "",
            "Python (official SDK):",
            "",
            "  from openai import OpenAI",
            f"  client = OpenAI(base_url=\"{self.base_url}\", api_key=\"{self.token}\")",
            "  result = client.images.generate(model=\"gpt-image-2\", prompt=\"A futuristic skyline at dusk\",",
            "                                  size=\"1024x1024\", quality=\"medium\")",
            "  print(result.data[0].b64_json[:40])",
            "",
            "Ctrl-C stops everything.",
            "",
        ])


def _state_pid(path: Path) -> int | None:
    try:
        pid = json.loads(path.read_text(encoding="utf-8")).get("pid")
    except (OSError, ValueError, AttributeError):
        return None
    return pid if isinstance(pid, int) else None


def is_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except OSError:
        return True  # exists, owned by someone else
    return True


__all__ = ["LocalStack", "StackError", "TemplateError"]
