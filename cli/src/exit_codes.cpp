#include "exit_codes.hpp"

#include <iostream>

namespace supaplane::cli {

ExitCode exit_code_for(grpc::StatusCode code) noexcept {
  switch (code) {
    case grpc::StatusCode::OK:
      return ExitCode::ok;
    case grpc::StatusCode::INVALID_ARGUMENT:
    case grpc::StatusCode::OUT_OF_RANGE:
      return ExitCode::usage;
    case grpc::StatusCode::UNAUTHENTICATED:
    case grpc::StatusCode::PERMISSION_DENIED:
      return ExitCode::auth;
    case grpc::StatusCode::NOT_FOUND:
      return ExitCode::not_found;
    case grpc::StatusCode::FAILED_PRECONDITION:
    case grpc::StatusCode::ALREADY_EXISTS:
    case grpc::StatusCode::ABORTED:
    case grpc::StatusCode::RESOURCE_EXHAUSTED:
      return ExitCode::rejected;
    case grpc::StatusCode::UNAVAILABLE:
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return ExitCode::unavailable;
    default:
      return ExitCode::internal;
  }
}

ExitCode exit_code_for(errc code) noexcept {
  switch (code) {
    case errc::invalid_argument:
      return ExitCode::usage;
    case errc::unauthenticated:
    case errc::permission_denied:
      return ExitCode::auth;
    case errc::not_found:
      return ExitCode::not_found;
    case errc::already_exists:
    case errc::failed_precondition:
    case errc::conflict:
    case errc::resource_exhausted:
      return ExitCode::rejected;
    case errc::unavailable:
      return ExitCode::unavailable;
    default:
      return ExitCode::internal;
  }
}

int fail(ExitCode code, const std::string& message, const std::string& hint) {
  std::cerr << "error: " << message << "\n";
  if (!hint.empty()) std::cerr << "hint: " << hint << "\n";
  return static_cast<int>(code);
}

int fail_usage(const std::string& message) { return fail(ExitCode::usage, message); }

int fail(const Error& e, const std::string& where) {
  const ExitCode code = exit_code_for(e.code);
  if (code == ExitCode::unavailable && !where.empty())
    return fail(code, "cannot reach " + where + ": " + e.message);
  return fail(code, e.message);
}

}  // namespace supaplane::cli
