#pragma once
// TLS for the gRPC ports (supaplane-api, supaplane-billing) and their
// clients (supaplanectl): PEM files in, gRPC credentials out. Without a
// certificate a server listens in plaintext (local development, or behind a
// TLS-terminating proxy); errors name the file, never its contents.

#include <grpcpp/security/credentials.h>
#include <grpcpp/security/server_credentials.h>
#include <grpcpp/server_builder.h>

#include <memory>
#include <string>

#include "supaplane/core/result.hpp"

namespace supaplane::tls {

struct ServerFiles {
  std::string cert_file;  ///< PEM certificate chain; "" with key_file "" = plaintext
  std::string key_file;   ///< PEM private key
};

/// TLS credentials from the files, or insecure ones when both are empty.
/// `invalid_argument` (field "tls_cert" / "tls_key") when only one is set,
/// a file cannot be read or is not PEM.
Result<std::shared_ptr<grpc::ServerCredentials>> server_credentials(const ServerFiles& files);

struct ClientOptions {
  bool enabled{false};  ///< TLS at all (implied by a CA file)
  std::string ca_file;  ///< PEM roots to trust; "" = the system's
};

/// Channel credentials for a client; `invalid_argument` (field "ca_file")
/// when the CA file cannot be read or is not PEM.
Result<std::shared_ptr<grpc::ChannelCredentials>> channel_credentials(const ClientOptions& opts);

/// What every gRPC server of ours sets on its builder: the port is its own
/// (gRPC's default SO_REUSEPORT would let a second process bind the same
/// address silently and take part of the traffic; without it the second
/// start fails), and a resource quota caps the threads it may use.
void exclusive_server(grpc::ServerBuilder& builder, int max_threads, const std::string& name);

/// Whether a server with these files speaks TLS ("tls" / "plaintext"), for logs.
const char* mode_name(const ServerFiles& files);

}  // namespace supaplane::tls
