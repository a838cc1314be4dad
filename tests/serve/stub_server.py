"""A scripted local HTTP server: answers each POST with the next (status, body, headers) of a script or a
function of the request, and records every request (path, headers, JSON body)."""
import http.server
import json
import threading


class StubServer:
    def __init__(self, respond):
        """respond(path, body, headers) -> (status, body dict, extra headers dict)."""
        self.requests = []
        stub = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"null")
                stub.requests.append((self.path, {k.lower(): v for k, v in self.headers.items()}, body))
                status, out, headers = respond(self.path, body, self.headers)
                data = json.dumps(out).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in headers.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]

    def __enter__(self):
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


def scripted(*steps):
    """respond() that plays `steps` in order (the last one repeats)."""
    steps = list(steps)

    def respond(path, body, headers):
        return steps.pop(0) if len(steps) > 1 else steps[0]
    return respond


def completion_body(text="ok", model="m", n=1):
    return {"id": "cmpl-1", "object": "text_completion", "created": 0, "model": model,
            "choices": [{"index": i, "text": text, "logprobs": None, "finish_reason": "length"} for i in range(n)],
            "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}}


def error_body(status, message):
    return {"error": {"message": message, "type": "error", "param": None, "code": str(status)}}
