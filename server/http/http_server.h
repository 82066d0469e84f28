#ifndef BURSAR_SERVER_HTTP_HTTP_SERVER_H_
#define BURSAR_SERVER_HTTP_HTTP_SERVER_H_

// bursard's HTTP side port: a small router over cpp-httplib (Debian's
// libcpp-httplib-dev). It owns the httplib server and its threads (one
// listener and a pool of workers) and answers every request itself:
//   - an exact path match on a route of the request's method runs its handler;
//   - a known path with another method is 405 (with an Allow header);
//   - an unknown path is 404;
//   - a body over `max_body_bytes` is 413;
// every error answer is JSON: {"code": "NOT_FOUND", "message": "..."}.
//
// Every request passes through one gate (SetGate) after it is read and before
// any handler runs: the one place where a request's headers are seen before
// dispatch (e.g. for bearer-token checks).
//
// With a CallGate (SetCallGate, server/overload.h: bursard's
// --max_in_flight_calls, shared with the gRPC services), every request to a
// POST route (the calls: Check, Report, the Portkey webhook) takes a place
// in it before the request gate and the handler run, and frees it when the
// handler returns; GET routes (/metrics) are not counted. A request whose
// deadline has passed is answered 504 DEADLINE_EXCEEDED, one past the bound
// 429 RESOURCE_EXHAUSTED; neither runs any handler. The deadline is
// `received` plus the timeout a caller may send in the header
// x-bursar-timeout-ms or Envoy's x-envoy-expected-rq-timeout-ms
// (milliseconds; with both, the smaller); without either, none.
//
// Routes and the gate are set before Start() and never changed after it.
// Handlers run on the worker threads, concurrently: they must be
// thread-safe.

#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "server/overload.h"

namespace httplib {
class Server;
}  // namespace httplib

namespace bursar::server::http {

// What a handler answers.
struct HttpReply {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  // Extra response headers.
  std::vector<std::pair<std::string, std::string>> headers;
};

// One request as handlers see it.
struct HttpRequest {
  std::string method;
  std::string path;
  // Header names in lower case, in the order received.
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  // The peer's address, e.g. "127.0.0.1".
  std::string remote_addr;
  // When the request was read; its deadline counts from here.
  absl::Time received = absl::Now();

  // The first value of a header (name in any case); empty if absent.
  std::string Header(absl::string_view name) const;
};

using GetHandler = std::function<HttpReply()>;
using PostHandler = std::function<HttpReply(const HttpRequest&)>;
// Runs before dispatch; a reply stops the request there (e.g. 401), nullopt
// lets it through.
using RequestGate = std::function<std::optional<HttpReply>(const HttpRequest&)>;

struct HttpServerOptions {
  // Largest request body accepted; larger ones are answered 413.
  size_t max_body_bytes = 1 << 20;
  // Worker threads that run handlers.
  int worker_threads = 4;
  // How long a connection may take to send a request.
  int read_timeout_seconds = 5;
  // How long an idle keep-alive connection is kept; Stop waits at most this
  // long for idle connections to close.
  int keep_alive_timeout_seconds = 2;
};

// "host:port" with a port 0..65535; the host may be an IPv6 literal in
// brackets ("[::1]:8082"). INVALID_ARGUMENT saying what is wrong otherwise.
absl::StatusOr<std::pair<std::string, int>> ParseHostPort(
    absl::string_view address);

class HttpServer {
 public:
  explicit HttpServer(HttpServerOptions options = {});
  // Stops the server if it runs.
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Routes: `path` is matched exactly (no patterns). A second handler for
  // the same method and path replaces the first.
  void HandleGet(std::string path, GetHandler handler);
  void HandlePost(std::string path, PostHandler handler);
  void SetGate(RequestGate gate);
  // The CallGate of POST routes (see the top of this file); null: none.
  // `gate` must outlive the server.
  void SetCallGate(CallGate* gate) { call_gate_ = gate; }

  // Binds `address` ("host:port"; port 0 picks a free one) and serves on
  // background threads. Returns once it accepts connections. Errors:
  // INVALID_ARGUMENT for a malformed address, UNAVAILABLE when it cannot
  // bind, FAILED_PRECONDITION when already started.
  absl::Status Start(absl::string_view address);
  // The bound "host:port" (the real port when started on port 0); empty
  // before Start.
  const std::string& bound_address() const { return bound_address_; }
  int port() const { return port_; }
  // Stops accepting, lets requests in progress finish, joins the threads.
  // Idempotent.
  void Stop();

  // Dispatches one request as the server would (routing, gate, errors);
  // for tests and for Start's handlers.
  HttpReply Dispatch(const HttpRequest& request) const;

 private:
  struct Routes {
    std::map<std::string, GetHandler> get;
    std::map<std::string, PostHandler> post;
  };

  const HttpServerOptions options_;
  Routes routes_;
  RequestGate gate_;
  CallGate* call_gate_ = nullptr;
  std::unique_ptr<httplib::Server> server_;
  std::thread listener_;
  // Set by the listener thread when listen_after_bind returns.
  std::shared_ptr<std::atomic<bool>> listener_exited_;
  std::string bound_address_;
  int port_ = 0;
};

// A reply with status `http_status` and the body
// {"code": "<code>", "message": "<message>"}.
HttpReply JsonError(int http_status, absl::string_view code,
                    absl::string_view message);

// The request's deadline: `received` plus the smaller of the timeouts in
// x-bursar-timeout-ms and x-envoy-expected-rq-timeout-ms (non-negative
// integers, milliseconds); InfiniteFuture without either. INVALID_ARGUMENT
// naming the header for any other value.
absl::StatusOr<absl::Time> RequestDeadline(const HttpRequest& request);

// JSON string literal (with quotes) for `text`, escaped per RFC 8259.
std::string JsonQuote(absl::string_view text);

}  // namespace bursar::server::http

#endif  // BURSAR_SERVER_HTTP_HTTP_SERVER_H_
