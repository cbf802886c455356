#include "supaplane/tls/tls.hpp"

#include <grpcpp/resource_quota.h>

#include <algorithm>
#include <fstream>

namespace supaplane::tls {

namespace {
constexpr std::size_t kMaxPemBytes = 1 << 20;

Result<std::string> read_pem(const std::string& path, const std::string& field) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return make_error(errc::invalid_argument, "cannot read " + path, field);
  std::string body;
  body.reserve(4096);
  char buf[4096];
  while (in.read(buf, sizeof buf) || in.gcount() > 0) {
    body.append(buf, static_cast<std::size_t>(in.gcount()));
    if (body.size() > kMaxPemBytes)
      return make_error(errc::invalid_argument, path + " is larger than 1 MiB", field);
  }
  if (body.find("-----BEGIN ") == std::string::npos)
    return make_error(errc::invalid_argument, path + " is not a PEM file", field);
  return body;
}
}  // namespace

Result<std::shared_ptr<grpc::ServerCredentials>> server_credentials(const ServerFiles& files) {
  if (files.cert_file.empty() && files.key_file.empty()) return grpc::InsecureServerCredentials();
  if (files.cert_file.empty())
    return make_error(errc::invalid_argument, "a TLS key needs its certificate (tls-cert)",
                      "tls_cert");
  if (files.key_file.empty())
    return make_error(errc::invalid_argument, "a TLS certificate needs its key (tls-key)",
                      "tls_key");
  auto cert = read_pem(files.cert_file, "tls_cert");
  if (!cert) return cert.error();
  auto key = read_pem(files.key_file, "tls_key");
  if (!key) return key.error();
  if (cert->find("CERTIFICATE-----") == std::string::npos)
    return make_error(errc::invalid_argument, files.cert_file + " holds no certificate",
                      "tls_cert");
  if (key->find("PRIVATE KEY-----") == std::string::npos)
    return make_error(errc::invalid_argument, files.key_file + " holds no private key", "tls_key");
  grpc::SslServerCredentialsOptions o;
  o.pem_key_cert_pairs.push_back({std::move(*key), std::move(*cert)});
  return grpc::SslServerCredentials(o);
}

Result<std::shared_ptr<grpc::ChannelCredentials>> channel_credentials(const ClientOptions& opts) {
  if (!opts.enabled && opts.ca_file.empty()) return grpc::InsecureChannelCredentials();
  grpc::SslCredentialsOptions o;
  if (!opts.ca_file.empty()) {
    auto ca = read_pem(opts.ca_file, "ca_file");
    if (!ca) return ca.error();
    o.pem_root_certs = std::move(*ca);
  }
  return grpc::SslCredentials(o);
}

const char* mode_name(const ServerFiles& files) {
  return files.cert_file.empty() && files.key_file.empty() ? "plaintext" : "tls";
}

void exclusive_server(grpc::ServerBuilder& builder, int max_threads, const std::string& name) {
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  grpc::ResourceQuota quota(name);
  quota.SetMaxThreads(std::max(4, max_threads));
  builder.SetResourceQuota(quota);
}

}  // namespace supaplane::tls
