/*  strata_error: see strata_error.h. */
#include "strata_error.h"

const char *
strata_strerror (int code)
{
    switch (code) {
    case STRATA_OK: return "ok";
    case STRATA_ENOMEM: return "out of memory";
    case STRATA_ETIMEOUT: return "no answer in time";
    case STRATA_EREJECTED: return "refused by the peer";
    case STRATA_ECONNECT: return "cannot connect";
    case STRATA_EPROTOCOL: return "protocol error";
    case STRATA_ENOTFOUND: return "not found";
    case STRATA_EIO: return "input/output error";
    case STRATA_EFRAMING: return "malformed message framing";
    case STRATA_ETOOLARGE: return "over the configured limit";
    case STRATA_EINTR: return "interrupted";
    case STRATA_EAGAIN: return "nothing waiting";
    case STRATA_EINVAL: return "invalid argument";
    case STRATA_ECORRUPT: return "data fails its checks";
    case STRATA_EUNAVAILABLE: return "unavailable";
    case STRATA_ESTATE: return "not in a state that allows it";
    }
    return "unknown error";
}
