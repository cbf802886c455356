// The registry credentials of SUPAPLANE_REGISTRY_AUTH_FILE (a Docker
// config.json): each image gets its own registry's entry and no other's.
#include <gtest/gtest.h>
#include <sodium.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <string>

#include "supaplane/docker/client.hpp"

namespace {

using supaplane::docker::Client;
using supaplane::docker::Json;

std::string b64(const std::string& s) {
  std::string out(sodium_base64_ENCODED_LEN(s.size(), sodium_base64_VARIANT_ORIGINAL), '\0');
  sodium_bin2base64(out.data(), out.size(), reinterpret_cast<const unsigned char*>(s.data()),
                    s.size(), sodium_base64_VARIANT_ORIGINAL);
  out.resize(out.find('\0'));
  return out;
}

/// The JSON an X-Registry-Auth value carries (null when empty).
Json decode(const std::string& header) {
  if (header.empty()) return Json();
  std::string bin(header.size(), '\0');
  size_t len = 0;
  if (sodium_base642bin(reinterpret_cast<unsigned char*>(bin.data()), bin.size(), header.data(),
                        header.size(), nullptr, &len, nullptr, sodium_base64_VARIANT_URLSAFE) != 0)
    return Json("not base64url");
  bin.resize(len);
  return Json::parse(bin, nullptr, false);
}

class RegistryAuth : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_GE(sodium_init(), 0);
    char tmpl[] = "/tmp/sp-registry-auth-XXXXXX";
    const int fd = ::mkstemp(tmpl);
    ASSERT_GE(fd, 0);
    ::close(fd);
    path_ = tmpl;
    const Json cfg{{"auths",
                    {{"registry.example.com", {{"auth", b64("alice:" + kPrivatePassword)}}},
                     {"https://index.docker.io/v1/", {{"auth", b64("bob:" + kHubPassword)}}},
                     {"broken.example.com", {{"auth", "%%%not base64"}}}}}};
    std::ofstream(path_) << cfg.dump();
  }
  void TearDown() override { std::remove(path_.c_str()); }

  const std::string kPrivatePassword = "s3cret-private-registry-pw";
  const std::string kHubPassword = "s3cret-hub-pw";
  std::string path_;
};

TEST_F(RegistryAuth, AnImageGetsItsOwnRegistrysCredentialsAndNoOther) {
  Client c("unix:///nonexistent/docker.sock", path_);
  const Json own = decode(c.registry_auth_for("registry.example.com/org/img:1"));
  ASSERT_TRUE(own.is_object()) << own;
  EXPECT_EQ(own.value("username", ""), "alice");
  EXPECT_EQ(own.value("password", ""), kPrivatePassword);
  EXPECT_EQ(own.value("serveraddress", ""), "registry.example.com");
  // An image without a registry host is Docker Hub's.
  const Json hub = decode(c.registry_auth_for("supabase/gotrue:v2"));
  ASSERT_TRUE(hub.is_object()) << hub;
  EXPECT_EQ(hub.value("username", ""), "bob");
  EXPECT_EQ(hub.value("serveraddress", ""), "https://index.docker.io/v1/");
  // Other registries get nothing, including look-alike hosts.
  EXPECT_EQ(c.registry_auth_for("other.example.org/org/img:1"), "");
  EXPECT_EQ(c.registry_auth_for("registry.example.com.evil.net/org/img:1"), "");
  EXPECT_EQ(c.registry_auth_for("evil.net/registry.example.com/img:1"), "");
  EXPECT_EQ(c.registry_auth_for("localhost:5000/img:1"), "");
  // A malformed entry is no credentials (not a crash, not a partial one).
  EXPECT_EQ(c.registry_auth_for("broken.example.com/img:1"), "");
}

TEST_F(RegistryAuth, NoFileOrAnUnreadableOneMeansAnonymousPulls) {
  EXPECT_EQ(Client("unix:///nonexistent/docker.sock").registry_auth_for("supabase/gotrue:v2"), "");
  EXPECT_EQ(Client("unix:///nonexistent/docker.sock", path_ + ".missing")
                .registry_auth_for("registry.example.com/org/img:1"),
            "");
}

TEST(PullError, DockersReasonIsTakenFromTheProgressStream) {
  // What dockerd streams when a pull fails after it has begun answering
  // (HTTP 200 already sent): progress objects, then the error.
  const std::string stream =
      R"({"status":"Pulling from supaplane/broken","id":"1"})"
      "\n"
      R"({"status":"Pulling fs layer","progressDetail":{},"id":"a3ed95caeb02"})"
      "\n"
      R"({"errorDetail":{"message":"filesystem layer verification failed for digest sha256:a3ed"},)"
      R"("error":"filesystem layer verification failed"})"
      "\n";
  EXPECT_EQ(Client::pull_error(stream),
            "filesystem layer verification failed for digest sha256:a3ed");
  EXPECT_EQ(Client::pull_error(R"({"error":"manifest unknown"})"), "manifest unknown");
  EXPECT_EQ(Client::pull_error(R"({"status":"Downloaded newer image for x:1"})"), "");
  EXPECT_EQ(Client::pull_error("not json\n{\"error\": 42}\n"), "");
  EXPECT_EQ(Client::pull_error(""), "");
}

}  // namespace
