#include <gtest/gtest.h>

#include "supaplane/auth/password.hpp"
#include "supaplane/auth/token.hpp"

namespace {
using namespace supaplane;

class FixedClock : public Clock {
 public:
  std::int64_t now = 1'800'000'000'000;
  std::int64_t now_unix_ms() const override { return now; }
};

const std::string kSecret(40, 's');

TEST(Password, HashVerifies) {
  auto h = auth::hash_password("correct horse");
  ASSERT_TRUE(h.ok());
  EXPECT_EQ(h->rfind("$argon2id$", 0), 0u);
  EXPECT_TRUE(auth::verify_password("correct horse", *h));
  EXPECT_FALSE(auth::verify_password("wrong horse", *h));
}

// A stored hash with the parameters hash_password used before they were
// named: libsodium's INTERACTIVE limits (m = 64 MiB, t = 2); password
// "correct horse".
const std::string kInteractiveHash =
    "$argon2id$v=19$m=65536,t=2,p=1$TI4atFdSaWEylKuRCO9MEQ$UUPPYMPlTf5TN4Bm8YKv4ZvFWZZ0oJcrH5c5lMO/"
    "F1U";

TEST(Password, NewHashesUseTheNamedParameters) {
  auto h = auth::hash_password("correct horse");
  ASSERT_TRUE(h.ok());
  EXPECT_EQ(h->rfind("$argon2id$v=19$m=19456,t=2,p=1$", 0), 0u) << *h;
  EXPECT_FALSE(auth::password_needs_rehash(*h));
}

TEST(Password, AHashWithTheFormerParametersStillVerifiesAndAsksForARehash) {
  ASSERT_EQ(kInteractiveHash.rfind("$argon2id$v=19$m=65536,t=2,p=1$", 0), 0u);
  EXPECT_TRUE(auth::verify_password("correct horse", kInteractiveHash));
  EXPECT_FALSE(auth::verify_password("wrong horse", kInteractiveHash));
  EXPECT_TRUE(auth::password_needs_rehash(kInteractiveHash));
  EXPECT_TRUE(auth::password_needs_rehash("not a hash"));
}

TEST(Password, Validation) {
  EXPECT_FALSE(auth::validate_password("short").ok());
  EXPECT_FALSE(auth::validate_password(std::string(129, 'x')).ok());
  EXPECT_TRUE(auth::validate_password("long enough").ok());
  EXPECT_TRUE(auth::validate_email("a@b.io").ok());
  for (const char* bad : {"", "a", "a@b", "@b.io", "a@@b.io", "a b@c.io", "a@.io", "a@b.io."})
    EXPECT_EQ(auth::validate_email(bad).error().field, "email") << bad;
}

TEST(Token, IssueAndVerify) {
  FixedClock clock;
  auth::TokenService ts(kSecret, clock);
  auto t = ts.issue({"acct_aaaaaaaaaaaaaaaaaaaa", auth::Role::admin});
  ASSERT_TRUE(t.ok());
  EXPECT_EQ(t->expires_at_unix_ms, clock.now + 3600 * 1000);
  auto p = ts.verify(t->token);
  ASSERT_TRUE(p.ok()) << p.error().message;
  EXPECT_EQ(p->account_id, "acct_aaaaaaaaaaaaaaaaaaaa");
  EXPECT_TRUE(p->is_admin());
}

TEST(Token, ExpiredForgedAndForeignAreRejected) {
  FixedClock clock;
  auth::TokenService ts(kSecret, clock);
  const auto tok = ts.issue({"acct_aaaaaaaaaaaaaaaaaaaa", auth::Role::customer})->token;
  clock.now += 3601 * 1000;
  EXPECT_EQ(ts.verify(tok).error().code, errc::unauthenticated);
  clock.now -= 3601 * 1000;
  auth::TokenService other(std::string(40, 'o'), clock);
  EXPECT_EQ(other.verify(tok).error().code, errc::unauthenticated);
  std::string tampered = tok;
  tampered[tampered.size() / 2] = tampered[tampered.size() / 2] == 'a' ? 'b' : 'a';
  EXPECT_FALSE(ts.verify(tampered).ok());
  // alg "none" with the same claims
  const std::string none =
      "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0."
      "eyJzdWIiOiJhY2N0X2FhYWFhYWFhYWFhYWFhYWFhYWFhIiwicm9sZSI6ImFkbWluIiwiaXNzIjoic3VwYXBsYW5lIiwi"
      "ZXhwIjo5OTk5OTk5OTk5fQ.";
  EXPECT_FALSE(ts.verify(none).ok());
  EXPECT_FALSE(ts.verify("").ok());
  EXPECT_FALSE(ts.verify("garbage").ok());
}

TEST(Token, RememberedTokenStillExpiresAndOthersAreStillChecked) {
  FixedClock clock;
  auth::TokenService ts(kSecret, clock);
  const auto tok = ts.issue({"acct_aaaaaaaaaaaaaaaaaaaa", auth::Role::customer})->token;
  ASSERT_TRUE(ts.verify(tok).ok());  // verified once: now remembered
  ASSERT_TRUE(ts.verify(tok).ok());
  // A token differing in one signature byte is not the remembered one.
  std::string forged = tok;
  forged.back() = forged.back() == 'A' ? 'B' : 'A';
  EXPECT_EQ(ts.verify(forged).error().code, errc::unauthenticated);
  // Another service with another secret never trusts this one's memory.
  auth::TokenService other(std::string(40, 'o'), clock);
  EXPECT_FALSE(other.verify(tok).ok());
  // Expiry is checked on every call, remembered or not.
  clock.now += 3600 * 1000 - 1000;
  EXPECT_TRUE(ts.verify(tok).ok());
  clock.now += 1000;
  EXPECT_EQ(ts.verify(tok).error().code, errc::unauthenticated);
  // Oversized tokens are refused before any work.
  EXPECT_EQ(ts.verify(std::string(auth::TokenService::kMaxTokenBytes + 1, 'a')).error().code,
            errc::unauthenticated);
}

TEST(Token, MemoryIsBounded) {
  FixedClock clock;
  auth::TokenService ts(kSecret, clock);
  std::string first;
  for (std::size_t i = 0; i < auth::TokenService::kCacheSize + 10; ++i) {
    clock.now += 1000;  // distinct iat/exp, so distinct tokens
    const auto tok = ts.issue({"acct_aaaaaaaaaaaaaaaaaaaa", auth::Role::customer})->token;
    if (i == 0) first = tok;
    ASSERT_TRUE(ts.verify(tok).ok());
  }
  EXPECT_LE(ts.remembered(), auth::TokenService::kCacheSize);
  // The first token's expiry was an hour after its issue: long past now.
  EXPECT_FALSE(ts.verify(first).ok());
}

}  // namespace
