"""In-process ``openssl verify -allow_proxy_certs -attime T -CApath CA -untrusted F F``:
the same libcrypto calls the CLI makes (X509_verify_cert with X509_V_FLAG_ALLOW_PROXY_CERTS,
a hash-dir lookup, the first certificate of the file as the leaf and every certificate
of it as untrusted), through ctypes, so the differential oracle of fuzz_chain costs
microseconds instead of a process (a fork+exec of openssl was ~90 % of an execution).

Where it cannot read the input the way the CLI would (a PEM block that does not parse),
``accepts`` returns None and the caller asks the CLI itself."""
import ctypes

_lc = ctypes.CDLL("libcrypto.so.3")
_P = ctypes.c_void_p
for name, res, args in (
        ("BIO_new_mem_buf", _P, (ctypes.c_char_p, ctypes.c_int)), ("BIO_free", ctypes.c_int, (_P,)),
        ("PEM_read_bio_X509", _P, (_P, _P, _P, _P)), ("X509_free", None, (_P,)),
        ("OPENSSL_sk_new_null", _P, ()), ("OPENSSL_sk_push", ctypes.c_int, (_P, _P)),
        ("OPENSSL_sk_free", None, (_P,)), ("X509_STORE_new", _P, ()),
        ("X509_STORE_load_path", ctypes.c_int, (_P, ctypes.c_char_p)),
        ("X509_STORE_set_flags", ctypes.c_int, (_P, ctypes.c_ulong)),
        ("X509_STORE_CTX_new", _P, ()), ("X509_STORE_CTX_free", None, (_P,)),
        ("X509_STORE_CTX_init", ctypes.c_int, (_P, _P, _P, _P)),
        ("X509_STORE_CTX_set_time", None, (_P, ctypes.c_ulong, ctypes.c_long)),
        ("X509_verify_cert", ctypes.c_int, (_P,)), ("ERR_clear_error", None, ()),
        ("ERR_peek_last_error", ctypes.c_ulong, ())):
    f = getattr(_lc, name)
    f.restype, f.argtypes = res, args

X509_V_FLAG_ALLOW_PROXY_CERTS = 0x40
_PEM_NO_START_LINE = 0x6C   # reason code of "no more PEM blocks": a clean end of the input


class Verifier:
    def __init__(self, ca_dir):
        self.store = _lc.X509_STORE_new()
        if not self.store or _lc.X509_STORE_load_path(self.store, ca_dir.encode()) != 1:
            raise RuntimeError("cannot set up the X509_STORE")
        _lc.X509_STORE_set_flags(self.store, X509_V_FLAG_ALLOW_PROXY_CERTS)

    def accepts(self, pem, at):
        """True/False as the CLI would answer; None when the input has a certificate block
        that does not parse (the CLI's loader and this one may then disagree)."""
        if b"\0" in pem or b"CERTIFICATE" not in pem:
            return None if pem else False
        _lc.ERR_clear_error()
        bio = _lc.BIO_new_mem_buf(pem, len(pem))
        certs = []
        try:
            while True:
                x = _lc.PEM_read_bio_X509(bio, None, None, None)
                if not x:
                    break
                certs.append(x)
            clean_end = (_lc.ERR_peek_last_error() & 0x7FFFFF) == _PEM_NO_START_LINE
            if not certs or not clean_end:
                return None
            sk = _lc.OPENSSL_sk_new_null()
            ctx = _lc.X509_STORE_CTX_new()
            try:
                for x in certs:
                    _lc.OPENSSL_sk_push(sk, x)
                if _lc.X509_STORE_CTX_init(ctx, self.store, certs[0], sk) != 1:
                    return None
                _lc.X509_STORE_CTX_set_time(ctx, 0, at)
                return _lc.X509_verify_cert(ctx) == 1
            finally:
                _lc.X509_STORE_CTX_free(ctx)
                _lc.OPENSSL_sk_free(sk)
        finally:
            for x in certs:
                _lc.X509_free(x)
            _lc.BIO_free(bio)
            _lc.ERR_clear_error()
