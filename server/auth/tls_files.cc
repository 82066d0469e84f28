#include "server/auth/tls_files.h"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <memory>
#include <sstream>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace bursar::server::auth {
namespace {

struct BioFree {
  void operator()(BIO* bio) const { BIO_free(bio); }
};
struct X509Free {
  void operator()(X509* x509) const { X509_free(x509); }
};
struct KeyFree {
  void operator()(EVP_PKEY* key) const { EVP_PKEY_free(key); }
};
using BioPtr = std::unique_ptr<BIO, BioFree>;
using X509Ptr = std::unique_ptr<X509, X509Free>;
using KeyPtr = std::unique_ptr<EVP_PKEY, KeyFree>;

absl::StatusOr<std::string> ReadWholeFile(const std::string& path,
                                          absl::string_view flag) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::InvalidArgumentError(absl::StrCat(
        flag, "=", path, ": cannot read it: ", std::strerror(errno)));
  }
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

BioPtr MemoryBio(const std::string& text) {
  return BioPtr(BIO_new_mem_buf(text.data(), static_cast<int>(text.size())));
}

std::string BioText(BIO* bio) {
  char* data = nullptr;
  const long size = BIO_get_mem_data(bio, &data);
  return std::string(data, size > 0 ? size : 0);
}

std::string Subject(X509* cert) {
  BioPtr out(BIO_new(BIO_s_mem()));
  X509_NAME_print_ex(out.get(), X509_get_subject_name(cert), 0,
                     XN_FLAG_RFC2253);
  return BioText(out.get());
}

std::string NotAfter(X509* cert) {
  BioPtr out(BIO_new(BIO_s_mem()));
  ASN1_TIME_print(out.get(), X509_get0_notAfter(cert));
  return BioText(out.get());
}

// The PEM certificates in `text`, in order.
std::vector<X509Ptr> ReadCertificates(const std::string& text) {
  std::vector<X509Ptr> certs;
  BioPtr bio = MemoryBio(text);
  while (X509* cert = PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr)) {
    certs.emplace_back(cert);
  }
  ERR_clear_error();  // the end of the input is reported as an error
  return certs;
}

}  // namespace

absl::StatusOr<TlsFilesSummary> CheckTlsFiles(const TlsFiles& files) {
  TlsFilesSummary summary;
  absl::StatusOr<std::string> chain =
      ReadWholeFile(files.cert_chain_path, "--tls_cert");
  if (!chain.ok()) return chain.status();
  std::vector<X509Ptr> certs = ReadCertificates(*chain);
  if (certs.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--tls_cert=", files.cert_chain_path,
        ": no PEM certificate in it (expected -----BEGIN CERTIFICATE-----, "
        "the server's certificate first, then intermediates)"));
  }
  summary.subject = Subject(certs[0].get());
  summary.not_after = NotAfter(certs[0].get());

  absl::StatusOr<std::string> key_text =
      ReadWholeFile(files.private_key_path, "--tls_key");
  if (!key_text.ok()) return key_text.status();
  BioPtr key_bio = MemoryBio(*key_text);
  KeyPtr key(PEM_read_bio_PrivateKey(key_bio.get(), nullptr, nullptr,
                                     const_cast<char*>("")));
  ERR_clear_error();
  if (key == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--tls_key=", files.private_key_path,
        ": not an unencrypted PEM private key (expected -----BEGIN PRIVATE "
        "KEY----- or -----BEGIN RSA/EC PRIVATE KEY-----)"));
  }
  if (X509_check_private_key(certs[0].get(), key.get()) != 1) {
    ERR_clear_error();
    return absl::InvalidArgumentError(
        absl::StrCat("--tls_key=", files.private_key_path,
                     " does not belong to the certificate in --tls_cert=",
                     files.cert_chain_path, " (", summary.subject,
                     "); give the key the certificate was issued for"));
  }

  if (!files.client_ca_path.empty()) {
    absl::StatusOr<std::string> ca =
        ReadWholeFile(files.client_ca_path, "--tls_client_ca");
    if (!ca.ok()) return ca.status();
    summary.client_ca_certs = static_cast<int>(ReadCertificates(*ca).size());
    if (summary.client_ca_certs == 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--tls_client_ca=", files.client_ca_path,
          ": no PEM certificate in it (expected the CA certificates that "
          "sign client certificates)"));
    }
  }
  return summary;
}

}  // namespace bursar::server::auth
