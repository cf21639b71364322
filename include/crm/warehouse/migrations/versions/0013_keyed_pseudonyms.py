"""Keyed pseudonyms: HMAC-SHA256 under a key the transformer cannot read.

Before, ``dim_customer`` hashed national ids as ``sha256(salt || id)`` and
``crm_transformer`` could read the salt (``private.pii_salt()``): whoever ran dbt could
hash every candidate id and reverse the column. Now the key (still ``CRM_PII_SALT``,
stored by ``crm migrate`` in ``private.pii_salt``) is readable by the owner only, and the
transformer gets one security definer function, ``private.pseudonym(text)``, returning
HMAC-SHA256(key, id) in hex: it can pseudonymise ids but never learn the key.

PostgreSQL 16 here has no pgcrypto, so the HMAC is RFC 2104 on ``sha256()``:
``H((K xor opad) || H((K xor ipad) || m))`` with a 64-byte block (a key longer than 64
bytes is hashed first). The padded keys are derived once per key by a trigger, so a call
costs two sha256 and one row read. ``private.pii_salt()`` (which returned the key in
clear) is dropped: nothing calls it any more.

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-30
"""

from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

UPGRADE = """
revoke all on private.pii_salt from crm_transformer;
drop function private.pii_salt();
revoke usage on schema private from crm_transformer;

-- New keys must be 32+ characters (settings.check_pii_key); an older, shorter key stays
-- until crm migrate replaces it, hence not valid.
alter table private.pii_salt drop constraint if exists pii_salt_salt_check;
alter table private.pii_salt add constraint pii_salt_key_length check (char_length(salt) >= 32) not valid;
alter table private.pii_salt add column hmac_inner bytea, add column hmac_outer bytea;
comment on table private.pii_salt is
    'The pseudonym key (CRM_PII_SALT, written by crm migrate) and its HMAC pads. Owner only.';

-- 64 bytes xor a repeated byte, 8 bytes at a time (bytea has no xor operator).
create function private.xor_block(block bytea, pad bigint) returns bytea
    language sql immutable strict
    set search_path = pg_catalog, pg_temp
as $f$
    select string_agg(
        decode(lpad(to_hex(('x' || encode(substr(block, i * 8 + 1, 8), 'hex'))::bit(64)::bigint # pad), 16, '0'),
               'hex'),
        ''::bytea order by i)
    from generate_series(0, 7) as i
$f$;
revoke all on function private.xor_block(bytea, bigint) from public;

create function private.derive_hmac_pads() returns trigger
    language plpgsql
    set search_path = pg_catalog, pg_temp
as $f$
declare
    k bytea := convert_to(new.salt, 'UTF8');
begin
    if length(k) > 64 then
        k := sha256(k);
    end if;
    k := k || decode(repeat('00', 64 - length(k)), 'hex');
    new.hmac_inner := private.xor_block(k, x'3636363636363636'::bigint);
    new.hmac_outer := private.xor_block(k, x'5c5c5c5c5c5c5c5c'::bigint);
    return new;
end $f$;
revoke all on function private.derive_hmac_pads() from public;
create trigger derive_hmac_pads before insert or update of salt on private.pii_salt
    for each row execute function private.derive_hmac_pads();
-- An older key shorter than 32 characters cannot get its pads (the row fails the new
-- check on any update): it is dropped here and crm migrate stores the configured key right
-- after the migrations (sync_secrets), as for a new warehouse; the pseudonyms change once.
delete from private.pii_salt where char_length(salt) < 32;
update private.pii_salt set salt = salt;

create function private.pseudonym(value text) returns text
    language sql stable strict security definer parallel safe
    set search_path = pg_catalog, pg_temp
as $f$
    select encode(sha256(key.hmac_outer || sha256(key.hmac_inner || convert_to(value, 'UTF8'))), 'hex')
    from private.pii_salt as key
$f$;
comment on function private.pseudonym(text) is
    'HMAC-SHA256(pseudonym key, value) in hex; the caller never sees the key.';
revoke all on function private.pseudonym(text) from public;
grant usage on schema private to crm_transformer;
grant execute on function private.pseudonym(text) to crm_transformer;
"""

DOWNGRADE = """
drop function private.pseudonym(text);
drop trigger derive_hmac_pads on private.pii_salt;
drop function private.derive_hmac_pads();
drop function private.xor_block(bytea, bigint);
alter table private.pii_salt drop column hmac_inner, drop column hmac_outer;
alter table private.pii_salt drop constraint pii_salt_key_length;
alter table private.pii_salt add constraint pii_salt_salt_check check (char_length(salt) >= 16) not valid;
create function private.pii_salt() returns text language plpgsql stable as $f$
declare
    value text;
begin
    select salt into value from private.pii_salt;
    if value is null then
        raise exception 'private.pii_salt is empty: set CRM_PII_SALT and run crm migrate';
    end if;
    return value;
end $f$;
revoke all on function private.pii_salt() from public;
grant usage on schema private to crm_transformer;
grant select on private.pii_salt to crm_transformer;
grant execute on function private.pii_salt() to crm_transformer;
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)
