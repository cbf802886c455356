#include "supaplane/secrets/secrets.hpp"

#include <gtest/gtest.h>

#include <regex>

#include "supaplane/auth/jwt.hpp"

namespace {
using namespace supaplane;

const char* kKey = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";  // 32 bytes

TEST(Secrets, MasterKeyMustBe32BytesOfBase64) {
  EXPECT_TRUE(secrets::MasterKey::from_base64(kKey).ok());
  EXPECT_EQ(secrets::MasterKey::from_base64("c2hvcnQ=").error().field, "master_key");
  EXPECT_FALSE(secrets::MasterKey::from_base64("not base64 !!").ok());
  EXPECT_FALSE(secrets::MasterKey::from_base64("").ok());
}

TEST(Secrets, PreviousMasterKeysAreACommaSeparatedList) {
  EXPECT_TRUE(secrets::master_keys_from_list("").value().empty());
  EXPECT_EQ(secrets::master_keys_from_list(std::string(kKey) + "," + kKey).value().size(), 2u);
  EXPECT_EQ(secrets::master_keys_from_list(std::string(kKey) + ", ,").value().size(), 1u);
  auto bad = secrets::master_keys_from_list(std::string(kKey) + ",c2hvcnQ=");
  ASSERT_FALSE(bad.ok());
  EXPECT_EQ(bad.error().field, "master_key_previous");
  EXPECT_NE(bad.error().message.find("#2"), std::string::npos);
  EXPECT_EQ(bad.error().message.find("c2hvcnQ"), std::string::npos);  // never the key's text
}

TEST(Secrets, SealOpensOnlyWithTheSameKeyAndTenant) {
  const auto key = secrets::MasterKey::from_base64(kKey).value();
  const std::string sealed = secrets::seal(key, "aaaaaaaaaaaaaaaaaaaa", "db-password-1");
  EXPECT_EQ(sealed.find("db-password-1"), std::string::npos);
  EXPECT_NE(sealed, secrets::seal(key, "aaaaaaaaaaaaaaaaaaaa", "db-password-1"));  // fresh nonce
  EXPECT_EQ(secrets::open(key, "aaaaaaaaaaaaaaaaaaaa", sealed).value(), "db-password-1");
  EXPECT_EQ(secrets::open(key, "bbbbbbbbbbbbbbbbbbbb", sealed).error().code, errc::corrupt);
  const auto other =
      secrets::MasterKey::from_base64("ZmVkY2JhOTg3NjU0MzIxMGZlZGNiYTk4NzY1NDMyMTA=").value();
  EXPECT_FALSE(secrets::open(other, "aaaaaaaaaaaaaaaaaaaa", sealed).ok());
  std::string tampered = sealed;
  tampered[tampered.size() / 2] = tampered[tampered.size() / 2] == 'A' ? 'B' : 'A';
  EXPECT_FALSE(secrets::open(key, "aaaaaaaaaaaaaaaaaaaa", tampered).ok());
  EXPECT_FALSE(secrets::open(key, "aaaaaaaaaaaaaaaaaaaa", "short").ok());
}

TEST(Secrets, TenantKeysHaveTheDocumentedShapes) {
  const auto k =
      secrets::generate_tenant_keys("abcdefghijklmnopqrst", "supaplane", 1'800'000'000).value();
  EXPECT_EQ(k.jwt_secret.size(), 43u);  // 32 bytes, URL-safe base64 without padding
  EXPECT_TRUE(std::regex_match(k.publishable_key, std::regex("sb_publishable_[A-Za-z0-9]{32}")));
  EXPECT_TRUE(std::regex_match(k.secret_key, std::regex("sb_secret_[A-Za-z0-9]{40}")));
  EXPECT_TRUE(std::regex_match(k.db_password, std::regex("[A-Za-z0-9]{32}")));
  for (const auto& [jwt, role] :
       {std::pair{k.anon_jwt, "anon"}, {k.service_role_jwt, "service_role"}}) {
    auto c = auth::verify_hs256(k.jwt_secret, jwt, 1'800'000'001);
    ASSERT_TRUE(c.ok()) << c.error().message;
    EXPECT_EQ(c->role, role);
    EXPECT_EQ(c->ref, "abcdefghijklmnopqrst");
    EXPECT_EQ(c->iss, "supaplane");
    EXPECT_EQ(c->iat, 1'800'000'000);
    EXPECT_GT(c->exp, c->iat);
    EXPECT_FALSE(
        auth::verify_hs256("another-secret-of-enough-length-000", jwt, 1'800'000'001).ok());
  }
  const auto k2 =
      secrets::generate_tenant_keys("abcdefghijklmnopqrst", "supaplane", 1'800'000'000).value();
  EXPECT_NE(k.jwt_secret, k2.jwt_secret);
  EXPECT_NE(k.secret_key, k2.secret_key);
}

TEST(Secrets, KeyHashIsStableHexAndDistinct) {
  const auto h = secrets::key_hash("sb_secret_abc");
  EXPECT_EQ(h.size(), 64u);
  EXPECT_EQ(h, secrets::key_hash("sb_secret_abc"));
  EXPECT_NE(h, secrets::key_hash("sb_secret_abd"));
  EXPECT_EQ(h.find("abc"), std::string::npos);
}

}  // namespace
