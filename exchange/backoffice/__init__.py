"""The staff back office at /backoffice/: the operations dashboard, trading status per
instrument, open interest and exposure, the trial balance and the audit log, each behind a staff
role (roles.py). The admin (exchange/admin.py) holds the rest, behind the same roles."""
