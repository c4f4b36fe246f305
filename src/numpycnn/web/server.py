"""``numpycnn serve``: the drawing page and its JSON API, on the standard library's ``ThreadingHTTPServer``.

This module is the HTTP side (requests read and checked, answers sent, the server and the command); what each
route answers is :class:`numpycnn.web.app.App`'s, with no HTTP in it.

Routes
------
``GET /``                     the page (``static/index.html``); ``GET /static/NAME`` its script and stylesheet
``GET /api/models``           the models on offer: ``{"default": NAME, "models": [{"name", "title", ...}]}``
``GET /api/model?name=NAME``  one model described: layers, shapes, classes, first-layer filters
``POST /api/predict``         ``{"image": "data:image/png;base64,...", "model": NAME?}`` -> label,
                              probabilities, the prepared 28x28 input and every layer's activation
``POST /api/conv-step``       the same plus ``"layer", "channel", "row", "col"`` -> one convolution output
                              computed step by step (:func:`numpycnn.web.explain.conv_step`)
``POST /api/gradients``       ``{"image", "model"?, "target"}`` -> the loss of ``target``, every parameter's
                              gradient and every layer's output gradient (:func:`numpycnn.web.learn.gradients`)
``POST /api/sgd-step``        the same plus ``"lr"`` -> one SGD step on a copy of the model: probabilities
                              before and after, the first filters and their change (:func:`~.learn.sgd_step`)
``POST /api/weight-gradient`` the same as gradients plus ``"layer", "filter", "in_channel", "row", "col"`` ->
                              one convolution weight's gradient as a sum (:func:`~.learn.weight_gradient`)
``POST /api/train``           ``{"model", "optimizer", "lr", "batch_size", "epochs", "images", "seed"}`` (each
                              optional, each bounded) -> starts a training on MNIST in the background
                              (:class:`numpycnn.web.train.TrainingJob`); 409 while one runs
``GET /api/train/status``     its state, step, curve, epochs, first-layer filters and test accuracy
``POST /api/train/cancel``    ``{"id"?}`` -> the training stops at its next step; 409 if none runs

Every request is checked before anything is decoded: the body's length from ``Content-Length`` (at most
:data:`MAX_BODY_BYTES`; a longer one is refused with 413 without being read), the content type, the JSON, the
data URL's media type (PNG, JPEG or WebP), the base64, the image's format and its size in pixels from the
header (at most :data:`MAX_PIXELS`) and only then the pixels. Every error is answered with a 4xx status and
``{"error": message}``, never a traceback. Static files are served by exact name from a table read from the
package's own ``static/`` folder at start, so no request path reaches the file system. While bound to a
loopback address the server answers only requests addressed to a loopback name (against DNS rebinding).
Requests are served on threads; each model runs one request at a time (its layers keep caches). The learning
routes never touch a served model: under its lock they copy it (:func:`numpycnn.web.learn.working_copy`) and
then run backward, and step, on the copy alone. A training runs on a thread of its own and touches no served
model; the model it trains is offered (``trained-1``, ...) once it is done, at most :data:`MAX_TRAINED` of them
in memory. Closing the server cancels a running training and waits for its thread.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from numpycnn.web.app import (  # noqa: F401  (the API's names, importable from the server too)
    IMAGE_TYPES,
    MAX_PIXELS,
    MAX_TRAINED,
    STATIC_DIR,
    App,
    RequestError,
    ServedModel,
    decode_image,
)

#: Largest request body read, in bytes; a drawing is a few kilobytes, a phone photo a few megabytes.
MAX_BODY_BYTES = 8 * 1024 * 1024
#: Seconds a connection may stay silent before it is dropped.
TIMEOUT = 30
_CONTENT_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
                  ".css": "text/css; charset=utf-8", ".png": "image/png", ".svg": "image/svg+xml"}
_CSP = ("default-src 'self'; img-src 'self' data: blob:; script-src 'self'; style-src 'self'; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
_LOOPBACK_NAMES = ("localhost", "127.0.0.1", "[::1]")


# -- HTTP ----------------------------------------------------------------------------------------------------
class Handler(BaseHTTPRequestHandler):
    """Routes requests to :class:`App`; every answer is JSON or a file from the package's ``static/``."""

    server_version = "numpycnn"
    sys_version = ""
    default_request_version = "HTTP/1.0"  # answers to unparsable request lines carry a status line too
    timeout = TIMEOUT
    server: WebServer

    GET_ROUTES = ("/api/models", "/api/model", "/api/train/status")
    POST_ROUTES = ("/api/predict", "/api/conv-step", "/api/gradients", "/api/sgd-step", "/api/weight-gradient",
                   "/api/train", "/api/train/cancel")

    def parse_request(self) -> bool:
        if not super().parse_request():
            return False
        if self.command not in ("GET", "HEAD", "POST"):
            self._send_json(405, {"error": f"Method {self.command} is not allowed: use GET or POST."},
                            {"Allow": "GET, HEAD, POST"})
            return False
        if not self._host_allowed():
            self._send_json(403, {"error": "This server answers only requests addressed to localhost."})
            return False
        return True

    def _host_allowed(self) -> bool:
        if not self.server.loopback_only:
            return True
        host = (self.headers.get("Host") or "").lower()
        name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
        return name in _LOOPBACK_NAMES

    def do_GET(self) -> None:
        self._answer(self._get)

    def do_HEAD(self) -> None:
        self._answer(self._get, head=True)

    def do_POST(self) -> None:
        self._answer(self._post)

    def _answer(self, route: Callable[[str, str], Any], head: bool = False) -> None:
        """Run ``route(path, query)``; send its JSON, or the error's status and message, or a generic 500."""
        parts = urlsplit(self.path)
        try:
            result = route(parts.path, parts.query)
            if isinstance(result, tuple):  # (body bytes, content type): a static file
                self._send(200, result[0], result[1], head=head)
            else:
                self._send_json(200, result, head=head)
        except RequestError as err:
            self._send_json(err.status, {"error": err.message}, head=head)
        except Exception as err:  # a bug: answer without a traceback, log it here
            self.log_error("internal error on %s %s: %r", self.command, parts.path, err)
            self._send_json(500, {"error": "Internal server error."}, head=head)

    def _get(self, path: str, query: str) -> Any:
        app = self.server.app
        if path == "/api/models":
            return app.list_models()
        if path == "/api/model":
            names = parse_qs(query).get("name")
            return app.describe(names[-1] if names else None)
        if path == "/api/train/status":
            return app.training.status()
        if path in self.POST_ROUTES:
            raise RequestError(405, f"{path} answers POST only.")
        name = "index.html" if path in ("/", "/index.html") else path[len("/static/"):] \
            if path.startswith("/static/") else None
        if name in app.static:  # bare file names read from static/ at start: no path reaches the file system
            return app.static[name], _CONTENT_TYPES.get(Path(name).suffix, "application/octet-stream")
        raise RequestError(404, f"Nothing at {path[:200]!r}.")

    def _post(self, path: str, query: str) -> Any:
        if path not in self.POST_ROUTES:
            self.close_connection = True  # the body stays unread
            status = 405 if path in self.GET_ROUTES or path in ("/", "/index.html") else 404
            raise RequestError(status, f"POST is not served at {path[:200]!r}.")
        payload = self._read_json()
        app = self.server.app
        if path == "/api/predict":
            return app.predict(payload)
        if path.startswith("/api/train"):
            return app.train(path, payload)
        return app.conv_step(payload) if path == "/api/conv-step" else app.learn(path, payload)

    def _read_json(self) -> dict[str, Any]:
        """The body as a JSON object, its length checked against :data:`MAX_BODY_BYTES` before reading."""
        self.close_connection = True  # until the body is read whole
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            raise RequestError(411, "Send the body with a Content-Length, not chunked.")
        length = self.headers.get("Content-Length")
        if length is None:
            raise RequestError(411, "A Content-Length header is required.")
        if not length.strip().isdigit():
            raise RequestError(400, f"Content-Length must be a non-negative integer. Got {length[:40]!r}.")
        size = int(length)
        if size > MAX_BODY_BYTES:
            raise RequestError(413, f"The body has {size:,} bytes; the limit is {MAX_BODY_BYTES:,}.")
        ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if ctype != "application/json":
            raise RequestError(415, f"Content-Type must be application/json. Got {ctype!r}.")
        body = self.rfile.read(size)
        if len(body) < size:
            raise RequestError(400, f"The body ended after {len(body)} of {size} bytes.")
        self.close_connection = False
        try:
            payload = json.loads(body)
        except (UnicodeDecodeError, ValueError) as err:
            raise RequestError(400, f"The body is not valid JSON: {err}.") from None
        if not isinstance(payload, dict):
            raise RequestError(400, f"The body must be a JSON object. Got {type(payload).__name__}.")
        return payload

    # -- sending -----------------------------------------------------------------------------------------------
    def _send(self, status: int, body: bytes, ctype: str, headers: dict[str, str] | None = None,
              head: bool = False) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        if ctype.startswith("text/html"):
            self.send_header("Content-Security-Policy", _CSP)
        if self.close_connection:
            self.send_header("Connection", "close")
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if not head and self.command != "HEAD":
            self.wfile.write(body)

    def _send_json(self, status: int, data: Any, headers: dict[str, str] | None = None, head: bool = False) -> None:
        try:
            body = json.dumps(data, allow_nan=False, separators=(",", ":")).encode("utf-8")
        except ValueError:  # NaN or infinity: a model whose (finite) weights overflow float32 on this picture
            raise RequestError(422, "The answer holds numbers that overflowed (NaN or infinity).") from None
        self._send(status, body, "application/json", headers, head)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """The standard library's own errors (bad request line, headers too long, ...) as JSON too."""
        self.close_connection = True
        self._send_json(code, {"error": message or HTTPStatus(code).phrase})

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the standard library's name)
        if self.server.log is not None:
            self.server.log(f"{self.address_string()} - {format % args}")


class WebServer(ThreadingHTTPServer):
    """A threading HTTP server holding the :class:`App` its handlers answer from."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], app: App, log: Callable[[str], None] | None = None) -> None:
        import socket

        if ":" in address[0]:
            self.address_family = socket.AF_INET6
        super().__init__(address, Handler)
        self.app, self.log = app, log
        self.loopback_only = address[0] in ("127.0.0.1", "localhost", "::1")

    def server_close(self) -> None:
        """Cancel a running training (waiting for its thread), then close the socket."""
        self.app.close()
        super().server_close()

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://[{host}]:{port}/" if ":" in str(host) else f"http://{host}:{port}/"


# -- the command ---------------------------------------------------------------------------------------------
def available_models(model_path: Path | None = None, device: str = "cpu") -> list[ServedModel]:
    """The shipped models, after the one in ``model_path`` when given (which is then the default), on
    ``device`` (``"cpu"`` or ``"cuda"``); the page's figures are host copies."""
    from numpycnn import pretrained
    from numpycnn.model.io import load_model

    served = []
    if model_path is not None:
        if not Path(model_path).is_file():
            raise FileNotFoundError(f"model file {str(model_path)!r} does not exist.")
        model = load_model(model_path, device=device)
        served.append(ServedModel("file", f"{Path(model_path).name} (your model)", model, str(model_path)))
    for name, record in pretrained.SHIPPED.items():
        served.append(ServedModel(name, record.title, pretrained.load(name).to(device), f"shipped: {record.filename}",
                                  record.test_accuracy))
    return served


def make_server(host: str = "127.0.0.1", port: int = 8000, model_path: Path | None = None,
                log: Callable[[str], None] | None = None, device: str = "cpu") -> WebServer:
    """A server on ``host:port`` (port 0: any free port) serving the shipped models and ``model_path``."""
    return WebServer((host, port), App(available_models(model_path, device)), log)


def serve(host: str = "127.0.0.1", port: int = 8000, model_path: Path | None = None, device: str = "cpu") -> int:
    """Serve until Ctrl-C: print the URL, log each request on stderr, close the socket on the way out."""
    if not 0 <= port <= 65535:
        raise ValueError(f"serve: `--port` must be in [0, 65535]. Got {port}.")
    server = make_server(host, port, model_path, log=lambda line: print(line, file=sys.stderr), device=device)
    print(f"numpycnn serve: {server.url} (models: {', '.join(server.app.models)}; Ctrl-C to stop)", flush=True)
    if not server.loopback_only:
        print("numpycnn serve: note: listening beyond this machine; anyone who can reach it can use the page.")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        print("\nnumpycnn serve: stopped.")
    finally:
        server.server_close()
    return 0
