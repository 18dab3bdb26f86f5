-- icustay_detail: one row per ICU stay whose admission has chart data (MIMIC-III v1.4).
-- Row semantics follow the community's standard concept (icustays ⋈ admissions ⋈ patients,
-- has_chartevents_data = 1; sequence numbers ranked over those rows). icurt's choices: lengths of
-- stay are exact fractional days, admission_age is fractional years from DOB to admittime, and
-- age_years caps the ages of patients over 89 (DOB shifted to ~300 years earlier) at 91.4.
WITH stay AS (
  SELECT
    ie.subject_id,
    ie.hadm_id,
    ie.icustay_id,
    pat.gender,
    pat.dod,
    adm.admittime,
    adm.dischtime,
    CAST(EXTRACT(EPOCH FROM adm.dischtime - adm.admittime) / 86400.0 AS DOUBLE PRECISION) AS los_hospital,
    CAST(EXTRACT(EPOCH FROM adm.admittime - pat.dob) / 86400.0 / 365.242 AS DOUBLE PRECISION) AS admission_age,
    adm.ethnicity,
    adm.hospital_expire_flag,
    DENSE_RANK() OVER (PARTITION BY adm.subject_id ORDER BY adm.admittime) AS hospstay_seq,
    ie.intime,
    ie.outtime,
    CAST(EXTRACT(EPOCH FROM ie.outtime - ie.intime) / 86400.0 AS DOUBLE PRECISION) AS los_icu,
    DENSE_RANK() OVER (PARTITION BY ie.hadm_id ORDER BY ie.intime) AS icustay_seq
  FROM icustays AS ie
  JOIN admissions AS adm ON adm.hadm_id = ie.hadm_id
  JOIN patients AS pat ON pat.subject_id = ie.subject_id
  WHERE adm.has_chartevents_data = 1
)
SELECT
  subject_id,
  hadm_id,
  icustay_id,
  gender,
  dod,
  admittime,
  dischtime,
  los_hospital,
  admission_age,
  CASE WHEN admission_age > 89 THEN 91.4 ELSE admission_age END AS age_years,
  ethnicity,
  CASE
    WHEN ethnicity IN ('WHITE', 'WHITE - RUSSIAN', 'WHITE - OTHER EUROPEAN', 'WHITE - BRAZILIAN',
                       'WHITE - EASTERN EUROPEAN') THEN 'white'
    WHEN ethnicity IN ('BLACK/AFRICAN AMERICAN', 'BLACK/CAPE VERDEAN', 'BLACK/HAITIAN',
                       'BLACK/AFRICAN', 'CARIBBEAN ISLAND') THEN 'black'
    WHEN ethnicity IN ('HISPANIC OR LATINO', 'HISPANIC/LATINO - PUERTO RICAN',
                       'HISPANIC/LATINO - DOMINICAN', 'HISPANIC/LATINO - GUATEMALAN',
                       'HISPANIC/LATINO - CUBAN', 'HISPANIC/LATINO - SALVADORAN',
                       'HISPANIC/LATINO - CENTRAL AMERICAN (OTHER)', 'HISPANIC/LATINO - MEXICAN',
                       'HISPANIC/LATINO - COLOMBIAN', 'HISPANIC/LATINO - HONDURAN') THEN 'hispanic'
    WHEN ethnicity IN ('ASIAN', 'ASIAN - CHINESE', 'ASIAN - ASIAN INDIAN', 'ASIAN - VIETNAMESE',
                       'ASIAN - FILIPINO', 'ASIAN - CAMBODIAN', 'ASIAN - OTHER', 'ASIAN - KOREAN',
                       'ASIAN - JAPANESE', 'ASIAN - THAI') THEN 'asian'
    WHEN ethnicity IN ('AMERICAN INDIAN/ALASKA NATIVE',
                       'AMERICAN INDIAN/ALASKA NATIVE FEDERALLY RECOGNIZED TRIBE') THEN 'native'
    WHEN ethnicity IN ('UNKNOWN/NOT SPECIFIED', 'UNABLE TO OBTAIN',
                       'PATIENT DECLINED TO ANSWER') THEN 'unknown'
    ELSE 'other'
  END AS ethnicity_grouped,
  hospital_expire_flag,
  hospstay_seq,
  hospstay_seq = 1 AS first_hosp_stay,
  intime,
  outtime,
  los_icu,
  icustay_seq,
  icustay_seq = 1 AS first_icu_stay
FROM stay
ORDER BY subject_id, admittime, intime, icustay_id
