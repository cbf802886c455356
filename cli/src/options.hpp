#pragma once
#include <functional>
#include <memory>
#include <string>

namespace grpc {
class ChannelCredentials;
}

namespace supaplane::cli {

/// Options shared by every command (flags, or SUPAPLANE_* environment).
struct GlobalOptions {
  std::string api_addr{"127.0.0.1:50051"};
  std::string billing_addr{"127.0.0.1:50052"};  ///< supaplane-billing's gRPC (billing commands)
  bool tls{false};                              ///< speak TLS to the API (implied by ca_file)
  std::string ca_file;  ///< PEM roots for the API's certificate; "" = the system's
  /// Built from tls / ca_file once the flags are parsed.
  std::shared_ptr<grpc::ChannelCredentials> credentials;
  /// One URL or a comma-separated list (cluster); may carry a password,
  /// so it is printed only through event_store::redact_url.
  std::string nats_url{"nats://127.0.0.1:4222"};
  std::string nats_creds;  ///< a NATS .creds file; "" = none
  std::string token_file;
  std::string token;  ///< overrides the token file; never printed
  bool json{false};
  int timeout_seconds{10};
};

/// What a parsed command runs; returns the process exit code.
using Action = std::function<int()>;

}  // namespace supaplane::cli
