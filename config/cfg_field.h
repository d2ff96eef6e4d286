/*
 * config/cfg_field.h - config tables declared next to the code they configure.
 *
 * A module above config/ (a source adapter, for instance) describes its section of the YAML
 * with one `static const struct cfg_field` table and one `struct cfg_section`; cfg_load() walks
 * the YAML mapping against it, with the same rules as every built-in section: unknown keys are
 * refused with a "did you mean" suggestion, duplicates and wrong types are reported with
 * FILE:LINE:COL, defaults are applied, integers are range-checked, `${VAR}` is interpolated,
 * and then the section's validate() checks the rules that span fields.
 *
 * The typed result is a zeroed struct of `size` bytes that the config owns (freed with the
 * config through cfg_section_free()). Nothing here is loop-bound.
 */
#ifndef SY_CFG_FIELD_H
#define SY_CFG_FIELD_H

#include <stddef.h>

enum cfg_field_kind {
    CFG_FK_INT,     /* int at `off`, in min..max, default `def` */
    CFG_FK_STR,     /* char * at `off` (owned by the config), default `def_str` (NULL: none) */
    CFG_FK_BOOL,    /* int at `off`: 0 or 1 (YAML true/false, yes/no, on/off), default `def` */
    CFG_FK_ENUM,    /* int at `off`: index into `names` (NULL-terminated), default `def` */
    CFG_FK_STRLIST, /* struct cfg_strlist at `off`: one string or a sequence of strings */
    CFG_FK_DEST,    /* char * at `off`: a destination URI (config.h: cfg_async), normalised */
    CFG_FK_STRMAP,  /* struct cfg_strmap at `off`: a mapping of names to scalars, in file order */
    CFG_FK_CUSTOM,  /* parsed by the section code of config/ itself */
};

/* Flags of a field. */
#define CFG_F_REQUIRED 0x1u /* absent is an error */

/* One key of a YAML mapping. */
struct cfg_field {
    const char *key;
    enum cfg_field_kind kind;
    size_t off;
    int def, min, max;
    const char *def_str;
    const char *const *names; /* CFG_FK_ENUM */
    unsigned flags;
    const char *doc; /* one line, for docs/config-reference.md */
};

/* A list of strings (CFG_FK_STRLIST). Owned by the config. */
struct cfg_strlist {
    char **v;
    size_t n;
};

/* A mapping of names to scalar values, as text (CFG_FK_STRMAP). Owned by the config. */
struct cfg_strmap {
    char **keys;
    char **vals;
    size_t n;
};

#define CFG_INT(k, type, member, d, lo, hi, fl, dc)                                                \
    {                                                                                              \
        .key = (k), .kind = CFG_FK_INT, .off = offsetof(type, member), .def = (d), .min = (lo),    \
        .max = (hi), .flags = (fl), .doc = (dc)                                                    \
    }
#define CFG_STR(k, type, member, d, fl, dc)                                                        \
    {                                                                                              \
        .key = (k), .kind = CFG_FK_STR, .off = offsetof(type, member), .def_str = (d),             \
        .flags = (fl), .doc = (dc)                                                                 \
    }
#define CFG_BOOL(k, type, member, d, fl, dc)                                                       \
    {                                                                                              \
        .key = (k), .kind = CFG_FK_BOOL, .off = offsetof(type, member), .def = (d), .flags = (fl), \
        .doc = (dc)                                                                                \
    }
#define CFG_ENUM(k, type, member, nm, d, fl, dc)                                                   \
    {                                                                                              \
        .key = (k), .kind = CFG_FK_ENUM, .off = offsetof(type, member), .names = (nm), .def = (d), \
        .flags = (fl), .doc = (dc)                                                                 \
    }
#define CFG_STRLIST(k, type, member, fl, dc)                                                       \
    {                                                                                              \
        .key = (k), .kind = CFG_FK_STRLIST, .off = offsetof(type, member), .flags = (fl),          \
        .doc = (dc)                                                                                \
    }
#define CFG_STRMAP(k, type, member, fl, dc)                                                        \
    {                                                                                              \
        .key = (k), .kind = CFG_FK_STRMAP, .off = offsetof(type, member), .flags = (fl),           \
        .doc = (dc)                                                                                \
    }
#define CFG_DEST(k, type, member, fl, dc)                                                          \
    {                                                                                              \
        .key = (k), .kind = CFG_FK_DEST, .off = offsetof(type, member), .flags = (fl), .doc = (dc) \
    }

/* Handed to a section's validate(): reports problems at the right line:col. */
struct cfg_check;

/*
 * Report a problem with KEY of the section being validated (at the key's value when it was
 * given, else at the section itself). The message reads FILE:LINE:COL: path.KEY: REASON.
 */
void cfg_check_error(struct cfg_check *chk, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* 1 when KEY was given in the YAML (not defaulted), else 0. */
int cfg_check_given(const struct cfg_check *chk, const char *key);

/*
 * The directory of the config file (absolute): what a section's relative paths are relative to.
 * Borrowed for the call. A validate() that takes paths makes them absolute against it.
 */
const char *cfg_check_base_dir(const struct cfg_check *chk);

/* A section declared outside config/. */
struct cfg_section {
    const char *name; /* its key in the YAML */
    const struct cfg_field *fields;
    size_t n_fields;
    size_t size; /* of the typed struct */
    /* Optional: rules that span fields, run after every field was stored without error. */
    void (*validate)(void *obj, struct cfg_check *chk);
};

/* Free the strings and lists FIELDS own in OBJ, then OBJ itself. NULL OBJ is a no-op. */
void cfg_section_free(const struct cfg_section *sec, void *obj);

#endif
