#ifndef HYPER2KVM_COPENSSL_SHIM_H
#define HYPER2KVM_COPENSSL_SHIM_H
/* SHA256_CTX is the one digest state OpenSSL lets a caller copy out and back in (an EVP
   context is opaque): the resumable output hash checkpoints it into the journal. Its
   functions are deprecated in OpenSSL 3, not removed. */
#define OPENSSL_SUPPRESS_DEPRECATED
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <openssl/err.h>
#endif
