#ifndef HYPER2KVM_COPENSSL_SHIM_H
#define HYPER2KVM_COPENSSL_SHIM_H
#include <openssl/evp.h>
#include <openssl/err.h>
#endif
