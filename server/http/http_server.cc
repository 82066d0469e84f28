#include "server/http/http_server.h"

#include <httplib.h>
#include <pthread.h>
#include <sys/socket.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdio>
#include <string>
#include <utility>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace bursar::server::http {
namespace {

const char* CodeNameForHttpStatus(int status) {
  switch (status) {
    case 400:
      return "INVALID_ARGUMENT";
    case 404:
      return "NOT_FOUND";
    case 405:
      return "METHOD_NOT_ALLOWED";
    case 408:
      return "DEADLINE_EXCEEDED";
    case 413:
      return "PAYLOAD_TOO_LARGE";
    case 414:
      return "URI_TOO_LONG";
    default:
      return status >= 500 ? "INTERNAL" : "INVALID_ARGUMENT";
  }
}

}  // namespace

std::string HttpRequest::Header(absl::string_view name) const {
  for (const auto& [key, value] : headers) {
    if (absl::EqualsIgnoreCase(key, name)) return value;
  }
  return "";
}

std::string JsonQuote(absl::string_view text) {
  std::string out = "\"";
  for (const char c : text) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          char buffer[8];
          std::snprintf(buffer, sizeof(buffer), "\\u%04x", c);
          out += buffer;
        } else {
          out += c;
        }
    }
  }
  out += "\"";
  return out;
}

HttpReply JsonError(int http_status, absl::string_view code,
                    absl::string_view message) {
  HttpReply reply;
  reply.status = http_status;
  reply.body = absl::StrCat("{\"code\":", JsonQuote(code),
                            ",\"message\":", JsonQuote(message), "}\n");
  return reply;
}

absl::StatusOr<std::pair<std::string, int>> ParseHostPort(
    absl::string_view address) {
  const size_t colon = address.rfind(':');
  if (colon == absl::string_view::npos || colon == 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "\"", address,
        "\" is not host:port (e.g. 127.0.0.1:8082 or [::1]:8082)"));
  }
  std::string host(address.substr(0, colon));
  if (host.front() == '[') {
    if (host.back() != ']') {
      return absl::InvalidArgumentError(absl::StrCat(
          "\"", address, "\": an IPv6 host must be in brackets, [::1]:8082"));
    }
    host = host.substr(1, host.size() - 2);
  }
  int port = -1;
  const absl::string_view port_text = address.substr(colon + 1);
  if (!absl::SimpleAtoi(port_text, &port) || port < 0 || port > 65535 ||
      port_text.empty() || !absl::ascii_isdigit(port_text.front())) {
    return absl::InvalidArgumentError(
        absl::StrCat("\"", address, "\": the port must be 0..65535"));
  }
  if (host.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("\"", address, "\": the host is empty"));
  }
  return std::make_pair(host, port);
}

HttpServer::HttpServer(HttpServerOptions options)
    : options_(std::move(options)) {}

HttpServer::~HttpServer() { Stop(); }

void HttpServer::HandleGet(std::string path, GetHandler handler) {
  routes_.get[std::move(path)] = std::move(handler);
}

void HttpServer::HandlePost(std::string path, PostHandler handler) {
  routes_.post[std::move(path)] = std::move(handler);
}

void HttpServer::SetGate(RequestGate gate) { gate_ = std::move(gate); }

absl::StatusOr<absl::Time> RequestDeadline(const HttpRequest& request) {
  absl::Time deadline = absl::InfiniteFuture();
  for (const char* header :
       {"x-bursar-timeout-ms", "x-envoy-expected-rq-timeout-ms"}) {
    const std::string value = request.Header(header);
    if (value.empty()) continue;
    int64_t timeout_ms = -1;
    if (!absl::SimpleAtoi(value, &timeout_ms) || timeout_ms < 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("header ", header, ": \"", value,
                       "\" is not a timeout in milliseconds (a non-negative "
                       "integer, e.g. 200)"));
    }
    deadline =
        std::min(deadline, request.received + absl::Milliseconds(timeout_ms));
  }
  return deadline;
}

HttpReply HttpServer::Dispatch(const HttpRequest& request) const {
  if (call_gate_ != nullptr && request.method == "POST") {
    if (auto it = routes_.post.find(request.path); it != routes_.post.end()) {
      absl::StatusOr<absl::Time> deadline = RequestDeadline(request);
      if (!deadline.ok()) {
        return JsonError(400, "INVALID_ARGUMENT", deadline.status().message());
      }
      CallGate::Pass pass;
      if (absl::Status s = call_gate_->Enter(*deadline, &pass); !s.ok()) {
        return JsonError(
            s.code() == absl::StatusCode::kResourceExhausted ? 429 : 504,
            absl::StatusCodeToString(s.code()), s.message());
      }
      if (gate_) {
        if (std::optional<HttpReply> stop = gate_(request); stop.has_value()) {
          return *std::move(stop);
        }
      }
      return it->second(request);  // the place is freed after the handler
    }
  }
  if (gate_) {
    if (std::optional<HttpReply> stop = gate_(request); stop.has_value()) {
      return *std::move(stop);
    }
  }
  const bool is_get = request.method == "GET" || request.method == "HEAD";
  const bool is_post = request.method == "POST";
  if (is_get) {
    if (auto it = routes_.get.find(request.path); it != routes_.get.end()) {
      return it->second();
    }
  } else if (is_post) {
    if (auto it = routes_.post.find(request.path); it != routes_.post.end()) {
      return it->second(request);
    }
  }
  std::vector<std::string> allowed;
  if (routes_.get.count(request.path) > 0) allowed.push_back("GET");
  if (routes_.post.count(request.path) > 0) allowed.push_back("POST");
  if (allowed.empty()) {
    return JsonError(404, "NOT_FOUND",
                     absl::StrCat("no such path: ", request.path));
  }
  HttpReply reply = JsonError(
      405, "METHOD_NOT_ALLOWED",
      absl::StrCat(request.method, " is not allowed on ", request.path,
                   "; use ", absl::StrJoin(allowed, " or ")));
  reply.headers.emplace_back("Allow", absl::StrJoin(allowed, ", "));
  return reply;
}

absl::Status HttpServer::Start(absl::string_view address) {
  if (server_ != nullptr) {
    return absl::FailedPreconditionError("the HTTP server already started");
  }
  absl::StatusOr<std::pair<std::string, int>> host_port =
      ParseHostPort(address);
  if (!host_port.ok()) return host_port.status();
  const auto& [host, port] = *host_port;

  auto server = std::make_unique<httplib::Server>();
  const int workers = options_.worker_threads > 0 ? options_.worker_threads : 1;
  server->new_task_queue = [workers] {
    return new httplib::ThreadPool(static_cast<size_t>(workers));
  };
  server->set_payload_max_length(options_.max_body_bytes);
  server->set_read_timeout(options_.read_timeout_seconds, 0);
  server->set_keep_alive_max_count(100);
  server->set_keep_alive_timeout(options_.keep_alive_timeout_seconds);
  // httplib's default also sets SO_REUSEPORT, which would let a second
  // bursard share the port silently; SO_REUSEADDR alone still allows a quick
  // restart.
  server->set_socket_options([](socket_t sock) {
    int yes = 1;
    setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof(yes));
  });

  auto handle = [this](const httplib::Request& in, httplib::Response& out) {
    HttpRequest request;
    request.method = in.method;
    request.path = in.path;
    request.body = in.body;
    request.remote_addr = in.remote_addr;
    for (const auto& [name, value] : in.headers) {
      request.headers.emplace_back(absl::AsciiStrToLower(name), value);
    }
    HttpReply reply = Dispatch(request);
    out.status = reply.status;
    for (auto& [name, value] : reply.headers) out.set_header(name, value);
    out.set_content(std::move(reply.body), reply.content_type);
  };
  // Every method reaches Dispatch, which tells 404 from 405 itself.
  constexpr char kAnyPath[] = "/.*";
  server->Get(kAnyPath, handle);
  server->Post(kAnyPath, handle);
  server->Put(kAnyPath, handle);
  server->Patch(kAnyPath, handle);
  server->Delete(kAnyPath, handle);
  server->Options(kAnyPath, handle);
  // Errors httplib answers itself (a body over the limit, a malformed
  // request) get the same JSON shape as ours.
  server->set_error_handler(httplib::Server::HandlerWithResponse(
      [this](const httplib::Request&, httplib::Response& out) {
        if (!out.body.empty())
          return httplib::Server::HandlerResponse::Unhandled;
        std::string message;
        switch (out.status) {
          case 413:
            message = absl::StrCat("the request body is larger than ",
                                   options_.max_body_bytes, " bytes");
            break;
          case 404:
            message = "no such path";
            break;
          default:
            message = absl::StrCat("malformed HTTP request (status ",
                                   out.status, ")");
        }
        HttpReply reply =
            JsonError(out.status, CodeNameForHttpStatus(out.status), message);
        out.set_content(reply.body, reply.content_type);
        return httplib::Server::HandlerResponse::Handled;
      }));
  server->set_exception_handler(
      [](const httplib::Request&, httplib::Response& out, std::exception_ptr) {
        HttpReply reply =
            JsonError(500, "INTERNAL", "the handler failed unexpectedly");
        out.status = 500;
        out.set_content(reply.body, reply.content_type);
      });

  int bound_port = -1;
  if (port == 0) {
    bound_port = server->bind_to_any_port(host);
  } else if (server->bind_to_port(host, port)) {
    bound_port = port;
  }
  if (bound_port <= 0) {
    return absl::UnavailableError(
        absl::StrCat("cannot listen on ", address,
                     " (address in use, not local, or not permitted)"));
  }
  server_ = std::move(server);
  port_ = bound_port;
  bound_address_ = host.find(':') != std::string::npos
                       ? absl::StrCat("[", host, "]:", bound_port)
                       : absl::StrCat(host, ":", bound_port);
  httplib::Server* raw = server_.get();
  listener_exited_ = std::make_shared<std::atomic<bool>>(false);
  listener_ = std::thread([raw, exited = listener_exited_] {
    pthread_setname_np(pthread_self(), "http-server");
    raw->listen_after_bind();
    exited->store(true);
  });
  // stop() only works once the listener runs: wait until it does (or gave
  // up, which only a broken socket causes).
  while (!server_->is_running() && !listener_exited_->load()) {
    absl::SleepFor(absl::Milliseconds(1));
  }
  if (listener_exited_->load()) {
    Stop();
    return absl::UnavailableError(
        absl::StrCat("the HTTP listener on ", address, " stopped at once"));
  }
  return absl::OkStatus();
}

void HttpServer::Stop() {
  if (server_ == nullptr) return;
  server_->stop();
  if (listener_.joinable()) listener_.join();
  server_.reset();
}

}  // namespace bursar::server::http
