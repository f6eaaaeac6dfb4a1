/* pam.c - the target account through the site's PAM stack: account management and a
 * session, never authentication (the credential was verified already; nobody types a
 * password). No policy here: which service, and what a result means, is Python's.
 *
 * The conversation answers nothing: a module that asks a question (a password prompt, a
 * "password expired, change it now" dialogue) gets PAM_CONV_ERR and so fails the step.
 * pam_acct_mgmt and pam_open_session run in the engine process, as root; pam_limits'
 * setrlimit calls land there too and are read back by Python (effects/pam.py).
 */
#include <stdlib.h>
#include <security/pam_appl.h>
#include "native.h"

static int answer_nothing(int n, const struct pam_message **msg, struct pam_response **resp,
                          void *data)
{
    (void)n, (void)msg, (void)data;
    *resp = NULL;
    return PAM_CONV_ERR;
}

static const struct pam_conv silent_conv = {answer_nothing, NULL};

/* pam_start for `user` with PAM_RUSER = the caller and PAM_TTY = a constant, so pam_access
 * never falls back to ttyname(stdin), which the caller chooses. *out = NULL on failure. */
int gx_pam_start(const char *service, const char *user, const char *ruser, const char *tty,
                 gx_pam **out)
{
    pam_handle_t *h = NULL;
    int rc = pam_start(service, user, &silent_conv, &h);
    *out = NULL;
    if (rc != PAM_SUCCESS) {
        if (h)
            pam_end(h, rc);
        return rc;
    }
    if ((rc = pam_set_item(h, PAM_RUSER, ruser)) != PAM_SUCCESS ||
        (rc = pam_set_item(h, PAM_TTY, tty)) != PAM_SUCCESS) {
        pam_end(h, rc);
        return rc;
    }
    *out = (gx_pam *)h;
    return PAM_SUCCESS;
}

int gx_pam_acct_mgmt(gx_pam *h)
{
    return pam_acct_mgmt((pam_handle_t *)h, PAM_SILENT);
}

int gx_pam_open_session(gx_pam *h)
{
    return pam_open_session((pam_handle_t *)h, PAM_SILENT);
}

int gx_pam_close_session(gx_pam *h)
{
    return pam_close_session((pam_handle_t *)h, PAM_SILENT);
}

/* PAM_DATA_SILENT: a module's cleanup must not undo anything in this process (the
 * payload may still be running from it). */
int gx_pam_end(gx_pam *h, int last)
{
    return pam_end((pam_handle_t *)h, last | PAM_DATA_SILENT);
}

const char *gx_pam_strerror(gx_pam *h, int rc)
{
    return pam_strerror((pam_handle_t *)h, rc);
}

/* Stable names for the audit record (pam_strerror's text is localised). */
const char *gx_pam_code(int rc)
{
    switch (rc) {
    case PAM_SUCCESS: return "PAM_SUCCESS";
    case PAM_ACCT_EXPIRED: return "PAM_ACCT_EXPIRED";
    case PAM_NEW_AUTHTOK_REQD: return "PAM_NEW_AUTHTOK_REQD";
    case PAM_AUTHTOK_EXPIRED: return "PAM_AUTHTOK_EXPIRED";
    case PAM_PERM_DENIED: return "PAM_PERM_DENIED";
    case PAM_USER_UNKNOWN: return "PAM_USER_UNKNOWN";
    case PAM_AUTH_ERR: return "PAM_AUTH_ERR";
    case PAM_CONV_ERR: return "PAM_CONV_ERR";
    case PAM_SESSION_ERR: return "PAM_SESSION_ERR";
    case PAM_SYSTEM_ERR: return "PAM_SYSTEM_ERR";
    case PAM_BUF_ERR: return "PAM_BUF_ERR";
    case PAM_ABORT: return "PAM_ABORT";
    case PAM_IGNORE: return "PAM_IGNORE";
    case PAM_SERVICE_ERR: return "PAM_SERVICE_ERR";
    case PAM_OPEN_ERR: return "PAM_OPEN_ERR";
    case PAM_SYMBOL_ERR: return "PAM_SYMBOL_ERR";
    default: return "PAM_OTHER";
    }
}
