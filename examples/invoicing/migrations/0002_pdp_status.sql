-- The PDP's answer to the submission of an issued invoice (NULL: not submitted).
ALTER TABLE invoices ADD COLUMN pdp_status TEXT;
