/* cryptowarm.c - libcrypto's one-time set-up, done once in the engine service's warm parent
 * so that no call's child repeats it (~1 ms: the default provider, the decoders and method
 * stores a chain's PEM, keys and signatures go through). It runs gx_verify_chain on a
 * constant self-signed certificate with no CA directory ("/dev/null": every lookup fails),
 * so the same code path is taken; the result is dropped. Nothing of a call, no CA or CRL
 * is read or kept: only libcrypto's own tables stay warm. */
#include <time.h>
#include "native.h"

/* RSA-2048, sha256WithRSAEncryption, CA:TRUE, valid until 2126; its key was discarded. */
static const char WARM_PEM[] =
    "-----BEGIN CERTIFICATE-----\n"
    "MIIDLzCCAhegAwIBAgIUcaeywoj9WF3VHZeqyTOYY7/NZsEwDQYJKoZIhvcNAQEL\n"
    "BQAwJjEkMCIGA1UEAwwbZ2xleGVjLXB5IGxpYmNyeXB0byB3YXJtLXVwMCAXDTI2\n"
    "MTIwNTE1MTc0MFoYDzIxMjYxMTExMTUxNzQwWjAmMSQwIgYDVQQDDBtnbGV4ZWMt\n"
    "cHkgbGliY3J5cHRvIHdhcm0tdXAwggEiMA0GCSqGSIb3DQEBAQUAA4IBDwAwggEK\n"
    "AoIBAQC1UTotjB3Jn0wOLE0vjUlk54ghnb9ZQofKArFfsJlhHy+ZPrhf4a4HAHGD\n"
    "lN9dNfWV1rEa2I7Nr07XrNewRlR/LyZwRjsXZOkuqrkMPrsBY67SmeJXRCyGRNFw\n"
    "KbYf7D+KSTjHUc06e4a2Zi5aqQ8OsHWOEIrdC8hYCqy6tWSgieiUE/QhE6+o0zbH\n"
    "TDmHqlliDPyatIomV+dt982GGfcmBU1P1ooRWjzXBkPtV+2jYYORI6G73oGTkWN/\n"
    "d0GN19Jq6fHBDIUpF2iRp4tovFGtRlDXUI7IA+C89WjdpIMKmlsp8D4U7dYm2hf3\n"
    "x/lvS4W1eE80aS8SMAfMUFvwtXzvAgMBAAGjUzBRMB0GA1UdDgQWBBQ5ETXpodVw\n"
    "GHo/fJHBgmvIW8yn9DAfBgNVHSMEGDAWgBQ5ETXpodVwGHo/fJHBgmvIW8yn9DAP\n"
    "BgNVHRMBAf8EBTADAQH/MA0GCSqGSIb3DQEBCwUAA4IBAQCWnIyTMiEoiJjCPaaH\n"
    "+juRk+TdHKlEh2JFLG3zGyrqi2QqsfKRkXPxc7F/8ltlHUPsPZSWv2/+UjrRBtkL\n"
    "iaxzM4kQn+UiiKkQxXo52Xnqbmj9vQCZ1S1eYN6577dLKyh8fzcvZobXD32hOZHy\n"
    "rjwJDbiBVhkOQU3EhtAhUysi7+lT78UtP+Ua6ojya2+BUNiphRo3KEBrTJb45WKp\n"
    "nF7Tn7xhrxYAXlCITsopnvxshG19vED+mm+oK6aJksv00XAgd7zhuf0MyUWGHNU9\n"
    "6StMawdBVrWU/+z6J2oso4rxXb3t77Pi/RvSrRdih8/zZIP3yn90otWJJ4hbMGRJ\n"
    "53On\n"
    "-----END CERTIFICATE-----\n";

void gx_crypto_warm(void) {
    gx_result res;
    gx_verify_chain(WARM_PEM, sizeof WARM_PEM - 1, "/dev/null", (int64_t)time(NULL), GX_VC_CRL_CHECK, &res);
    gx_result_free(&res);
}
